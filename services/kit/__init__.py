"""What every Flotilla service shares: settings, app factory, db, cache, errors, health...

Import from the submodules (``from services.kit.app import create_service_app``). This
package deliberately re-exports nothing: the operator imports the light modules
(catalog, metric_names, logging, events) and must not load FastAPI, SQLAlchemy or
uvicorn on the way (its image does not have them; tests/operator/test_footprint.py).
"""
