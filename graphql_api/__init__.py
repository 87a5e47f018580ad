"""The Strawberry GraphQL layer: a thin schema over audit/ and core/ (built in the next step)."""
