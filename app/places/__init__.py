"""Places: the médiation and France Services places, their index and matching lookups
(service), their import from the national files (importing, sources), their opening hours
(hours) and their tables (models)."""

# Its tables are app.models' too (one metadata for Alembic): loaded first, so that this
# package's models and app.models may import each other in either order.
import app.models  # noqa: F401
