"""Demo data for musicmap: the synthetic library generator (`data.demo_library`)."""
