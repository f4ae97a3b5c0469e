"""Post-market monitoring of the pipelines: time series of results, feedback, drift alerts."""
