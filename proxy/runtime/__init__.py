"""The process: listeners, signals, reload, drain."""
