"""Print the project's requirements (its dependencies and the named extras) from pyproject.toml,
one per line: the images install them in a layer of their own, before the project's code, so a
change to the code rebuilds (and a node pulls) only a small layer.

    python images/requirements.py pyproject.toml pipeline dl > requirements.txt
"""

from __future__ import annotations

import sys
import tomllib


def main(pyproject: str, *extras: str) -> None:
    with open(pyproject, "rb") as file:
        project = tomllib.load(file)["project"]
    optional = project.get("optional-dependencies", {})
    unknown = sorted(set(extras) - set(optional))
    if unknown:
        raise SystemExit(f"no such extra in {pyproject}: {', '.join(unknown)}")
    for requirement in [*project["dependencies"], *(r for e in extras for r in optional[e])]:
        print(requirement)


if __name__ == "__main__":
    main(*sys.argv[1:])
