"""Notifications: what each step of a referral tells whom (notify), the outbox that delivers
it as e-mails and Standard Webhooks (outbox), webhook subscriptions (webhooks) and the
addresses they may reach (webhook_address), and their tables (models)."""

# Its tables are app.models' too (one metadata for Alembic): loaded first, so that this
# package's models and app.models may import each other in either order.
import app.models  # noqa: F401
