"""graylane's benchmark against nginx: ``python -m loadtest`` (``make bench``); see loadtest/README.md."""
