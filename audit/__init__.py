"""The audit log domain: event vocabulary (events.py), model, recording (services.py) and
reading (selectors.py)."""
