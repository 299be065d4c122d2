"""What a person reads: figures (PNG), Markdown summaries and HTML pages drawn from the stages'
results."""
