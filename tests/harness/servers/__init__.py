"""Real servers run as local processes on 127.0.0.1: tests and the local failover backend use them."""
