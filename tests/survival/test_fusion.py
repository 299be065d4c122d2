"""PCA-fuse: the combined model, its bundle, and no leakage from the test cohort."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sksurv.metrics import concordance_index_censored
from sksurv.util import Surv

from lungsurv.survival.bundle import load_bundle, save_bundle
from lungsurv.survival.fusion import FusionModel, feature_blocks, score, survival_at


@pytest.fixture(scope="module")
def cohort() -> tuple[dict[str, pd.DataFrame], np.ndarray, np.ndarray]:
    """Two blocks of 60 features; two planted features in each, the rest noise."""
    rng = np.random.default_rng(11)
    n = 240
    ids = [f"P{i:03d}" for i in range(n)]
    gtv = pd.DataFrame(rng.standard_normal((n, 60)), index=ids).add_prefix("gtv_f")
    ring = pd.DataFrame(rng.standard_normal((n, 60)), index=ids).add_prefix("ring_f")
    eta = 0.6 * gtv["gtv_f0"] + 0.4 * gtv["gtv_f1"] - 0.5 * ring["ring_f0"] + 0.3 * ring["ring_f1"]
    time = rng.exponential(np.exp(-eta.to_numpy())) * 600 + 1
    censor = rng.uniform(100, 2500, n)
    y = Surv.from_arrays(time <= censor, np.minimum(time, censor))
    return {"gtv": gtv, "ring_6mm": ring}, y, eta.to_numpy()


def _fit(blocks: dict[str, pd.DataFrame], y: np.ndarray) -> FusionModel:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return FusionModel(random_state=0).fit(blocks, y)


def _split(blocks, rows):
    return {k: v.iloc[rows] for k, v in blocks.items()}


def test_combined_model_ranks_like_the_truth(cohort) -> None:
    blocks, y, eta = cohort
    train, test = np.arange(160), np.arange(160, 240)
    model = _fit(_split(blocks, train), y[train])
    assert 1 <= model.n_components_ <= sum(len(b.features) for b in model.params_.blocks)
    assert model.params_.explained_variance_ratio.sum() >= 0.95
    risk = model.predict(_split(blocks, test))
    event, time = y["event"][test], y["time"][test]
    c_model = concordance_index_censored(event, time, risk)[0]
    c_oracle = concordance_index_censored(event, time, eta[test])[0]
    print(f"combined test C-index {c_model:.3f}, oracle {c_oracle:.3f}")
    assert c_model > c_oracle - 0.1
    assert np.median(model.predict(_split(blocks, train))) == pytest.approx(model.cutoff_)
    loadings = model.loadings()
    assert loadings.shape == (len(loadings.index), model.n_components_)
    assert any(i.startswith("gtv:") for i in loadings.index)


def test_bundle_reproduces_risks_exactly(cohort, tmp_path: Path) -> None:
    blocks, y, _ = cohort
    model = _fit(blocks, y)
    save_bundle(model.params_, tmp_path / "bundle", radiomics_params={"setting": {"binWidth": 25}})
    document = json.loads((tmp_path / "bundle" / "model.json").read_text())
    assert document["versions"]["lungsurv"] and document["cutoff"] == model.cutoff_
    assert (tmp_path / "bundle" / "radiomics_params.yaml").exists()
    loaded = load_bundle(tmp_path / "bundle")
    fresh, again = score(blocks, model.params_), score(blocks, loaded)
    for key in fresh:
        assert np.array_equal(fresh[key], again[key]), key
    survival = survival_at(fresh["risk"], [365, 730, 1095], loaded)
    assert survival.shape == (len(fresh["risk"]), 3)
    assert np.all(np.diff(survival, axis=1) <= 0) and np.all((survival > 0) & (survival <= 1))


def test_scoring_never_changes_the_fitted_model(cohort) -> None:
    """Scoring perturbed rows leaves every fitted number as is, and a refit on the same training
    rows gives the same numbers (the whole-cohort leakage test belongs to the stage that splits)."""
    blocks, y, _ = cohort
    train, test = np.arange(160), np.arange(160, 240)
    model = _fit(_split(blocks, train), y[train])
    before = json.dumps(_as_lists(model.params_))
    rng = np.random.default_rng(0)
    perturbed = {
        k: v.iloc[test] * rng.normal(1, 0.5, v.iloc[test].shape) for k, v in blocks.items()
    }
    model.predict(perturbed)
    refit = _fit(_split(blocks, train), y[train])
    assert json.dumps(_as_lists(model.params_)) == before == json.dumps(_as_lists(refit.params_))


def _as_lists(params) -> dict:
    return {
        "blocks": [(b.name, b.features, b.mean.tolist(), b.scale.tolist()) for b in params.blocks],
        "pca": params.pca_components.tolist(),
        "cox": params.cox_coef.tolist(),
        "cutoff": params.cutoff,
    }


def test_feature_blocks_from_the_radiomics_table() -> None:
    table = pd.DataFrame(
        {
            "patient_id": ["a", "a", "b", "b"],
            "roi": ["gtv", "ring_6mm", "gtv", "ring_6mm"],
            "n_voxels": [10, 20, 30, 40],
            "original_firstorder_Mean": [1.0, 2.0, 3.0, 4.0],
        }
    )
    blocks = feature_blocks(table, ["gtv", "ring_6mm"], patients=["b", "a"])
    assert list(blocks["gtv"].index) == ["b", "a"]
    assert list(blocks["ring_6mm"]["original_firstorder_Mean"]) == [4.0, 2.0]
    with pytest.raises(ValueError, match="no row for 1 patient"):
        feature_blocks(table, ["gtv"], patients=["a", "c"])


@pytest.mark.parametrize("variance", [-0.1, 1.2])
def test_invalid_variance_is_named(cohort, variance: float) -> None:
    blocks, y, _ = cohort
    with pytest.raises(ValueError, match=str(variance)):
        FusionModel(variance=variance).fit(blocks, y)


def test_nothing_selected_gives_the_null_model(cohort, tmp_path: Path) -> None:
    blocks, y, _ = cohort
    noise = {"gtv": blocks["gtv"].iloc[:, 10:14]}
    with pytest.warns(UserWarning, match="null model"):
        model = FusionModel(alpha=1e-9).fit(noise, y)
    assert model.n_components_ == 0 and model.loadings().shape == (0, 0)
    risk = model.predict(noise)
    assert np.array_equal(risk, np.zeros(len(risk)))
    loaded = load_bundle(save_bundle(model.params_, tmp_path / "null"))
    assert np.array_equal(score(noise, loaded)["risk"], risk)
    survival = survival_at(risk, [365, 3650], loaded)
    assert 0 < survival[0, 1] < survival[0, 0] < 1


def test_not_a_bundle(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a model bundle"):
        load_bundle(tmp_path)


def test_a_diverging_cox_fit_falls_back_to_the_smallest_ridge_penalty() -> None:
    """Collinear components of a perfectly ordered cohort make Newton's method diverge; the fit
    takes the smallest ridge penalty that converges and says so."""
    from lungsurv.survival.fusion import _fit_cox

    time = np.arange(1, 11, dtype=float)
    components = np.column_stack([time, 2 * time, np.sin(time)])
    y = Surv.from_arrays(np.ones(10, bool), time)
    with pytest.warns(UserWarning, match="ridge penalty 0.0001"):
        cox, alpha = _fit_cox(components, y)
    assert alpha == 1e-4 and np.all(np.isfinite(cox.coef_))
    _, plain = _fit_cox(components[:, [0, 2]] + np.random.default_rng(1).normal(0, 3, (10, 2)), y)
    assert plain == 0.0


def test_signature_fusion_is_a_cox_model_on_the_blocks_signatures(cohort, tmp_path: Path) -> None:
    blocks, y, _ = cohort
    train, test = _split(blocks, slice(0, 160)), _split(blocks, slice(160, None))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = FusionModel(random_state=0, fusion="signatures").fit(train, y[:160])
    assert model.n_components_ == 2 and model.params_.metadata["fusion"] == "signatures"
    scored = score(test, model.params_)
    # Each "component" is a block's signature score; the risk weighs them by the Cox model.
    for k, name in enumerate(["gtv", "ring_6mm"]):
        np.testing.assert_allclose(scored["components"][:, k], scored[f"signature_{name}"])
    np.testing.assert_allclose(scored["risk"], scored["components"] @ model.params_.cox_coef)
    event, time = y["event"][160:], y["time"][160:]
    assert concordance_index_censored(event, time, scored["risk"])[0] > 0.65
    bundle = save_bundle(model.params_, tmp_path / "bundle")
    np.testing.assert_array_equal(score(test, load_bundle(bundle))["risk"], scored["risk"])
    with pytest.raises(ValueError, match="fusion must be one of"):
        FusionModel(fusion="stack").fit(train, y[:160])


def test_stacked_fusion_weighs_the_blocks_by_their_held_out_scores(cohort, tmp_path: Path) -> None:
    """Stacking keeps the full-data signatures as covariates; its Cox weights are fitted on
    out-of-fold scores. A block of pure noise, whose signature selects noise that happens to
    fit the training patients, scores well in sample and at chance held out: stacking gives it
    less weight than the in-sample fusion does."""
    blocks, y, _ = cohort
    event, time = y["event"], y["time"]
    rng = np.random.default_rng(0)
    leaky = pd.DataFrame(rng.standard_normal((240, 400)), index=blocks["gtv"].index)
    leaky = leaky.add_prefix("dl_f")
    train = {**_split(blocks, slice(0, 160)), "dl": leaky.iloc[:160]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stacked = FusionModel(random_state=0, fusion="stacked").fit(train, y[:160])
        again = FusionModel(random_state=0, fusion="stacked").fit(
            {k: v.iloc[::-1] for k, v in train.items()}, y[:160][::-1]
        )
        in_sample = FusionModel(random_state=0, fusion="signatures").fit(train, y[:160])
    assert stacked.params_.metadata["fusion"] == "stacked" and stacked.n_components_ == 3
    held = stacked.params_.metadata["stacking_c_index"]
    assert set(held) == {"gtv", "ring_6mm", "dl"}
    assert min(held["gtv"], held["ring_6mm"]) > 0.58 and held["dl"] < 0.56
    # Same signatures as the in-sample fusion, other weights; the row order changes nothing.
    np.testing.assert_array_equal(stacked.params_.pca_components, in_sample.params_.pca_components)
    np.testing.assert_allclose(stacked.params_.cox_coef, again.params_.cox_coef, rtol=1e-9)
    # Relative to the radiomics blocks, the memorising block weighs less when weighed held out.
    share = lambda m: abs(m.params_.cox_coef[2]) / np.abs(m.params_.cox_coef[:2]).sum()  # noqa: E731
    assert share(stacked) < share(in_sample)
    test = {**_split(blocks, slice(160, None)), "dl": leaky.iloc[160:]}
    c_stacked = concordance_index_censored(event[160:], time[160:], stacked.predict(test))[0]
    c_in_sample = concordance_index_censored(event[160:], time[160:], in_sample.predict(test))[0]
    assert c_stacked > 0.64 and c_stacked > c_in_sample
    # The baseline is Breslow's for the stored risk: scoring, survival and the bundle agree.
    risk = stacked.predict(train)
    assert np.median(risk) == pytest.approx(stacked.cutoff_)
    survival = survival_at(risk, [365, 730], stacked.params_)
    assert np.all((survival > 0) & (survival < 1))
    loaded = load_bundle(save_bundle(stacked.params_, tmp_path / "stacked"))
    np.testing.assert_array_equal(score(test, loaded)["risk"], stacked.predict(test))


def test_stacked_fusion_needs_two_folds_with_deaths(cohort) -> None:
    from lungsurv.survival.fusion import BlockParameters

    blocks, _, _ = cohort
    few = {"gtv": blocks["gtv"].iloc[:6]}
    one_death = Surv.from_arrays([True, False, False, False, False, False], np.arange(1.0, 7.0))
    prefit = [BlockParameters("gtv", ["gtv_f0"], np.zeros(1), np.ones(1), np.ones(1))]
    model = FusionModel(fusion="stacked", block_parameters=prefit)
    with pytest.raises(ValueError, match="6 patients with 1 deaths give 1"):
        model.fit(few, one_death)


def test_variance_zero_chooses_the_share_of_variance_by_cross_validation(cohort) -> None:
    from lungsurv.survival.fusion import VARIANCE_CANDIDATES

    blocks, y, _ = cohort
    train = _split(blocks, slice(0, 160))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = FusionModel(random_state=0, variance=0.0).fit(train, y[:160])
        again = FusionModel(random_state=0, variance=0.0).fit(train, y[:160])
    chosen = model.params_.metadata["pca_variance"]
    scores = model.params_.metadata["pca_variance_cv"]
    assert chosen in VARIANCE_CANDIDATES and set(scores) == {f"{c:g}" for c in VARIANCE_CANDIDATES}
    assert scores[f"{chosen:g}"] == max(scores.values()) and 0.5 < max(scores.values()) <= 1
    assert again.params_.metadata == model.params_.metadata  # seeded folds: the same choice
    explained = model.params_.explained_variance_ratio.sum()
    assert explained >= chosen - 1e-9 or chosen == 1.0
