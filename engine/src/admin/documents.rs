//! Projects, models and cubes as JSON documents: put, get, list, drop, plan.
