"""Alembic environment: runs on the connection handed over by ``cambrian.archive._migrate``."""

from alembic import context

from cambrian.archive._schema import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:
    raise RuntimeError("cambrian migrations run programmatically: see cambrian.archive._migrate")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
