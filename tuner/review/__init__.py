"""The review wing: figures, the optuna-dashboard adapter and the HTML report of stored
studies. It reads the core's records and never changes a study's trials."""
