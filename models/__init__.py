"""The shapes data takes: pydantic records at the boundaries, SQLAlchemy tables in the warehouse.

No business logic lives here; every other folder imports from it.
"""
