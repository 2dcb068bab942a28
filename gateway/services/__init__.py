"""Service routing: proxy, balancing, health checks, circuit breaker, retry budget, composites."""
