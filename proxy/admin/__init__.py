"""The admin API: health, counters and control, on its own listener."""
