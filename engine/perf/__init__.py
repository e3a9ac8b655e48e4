"""Performance models without torch: PALEO time model, Optimus loss model and forecast."""
