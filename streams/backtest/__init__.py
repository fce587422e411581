"""The backtest: replay a file of events (replay), measure each trigger (measure), report it."""
