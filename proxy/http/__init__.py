"""The data plane: downstream and upstream HTTP/1.1 protocols and the connection pool."""
