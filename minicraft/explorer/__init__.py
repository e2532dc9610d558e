"""The parameter explorer: a grid of sampling settings, its samples, measures and an HTML report."""
