"""Alembic environment: the engine comes from the caller (``gateway.store.engine.upgrade``)."""

from alembic import context

from gateway.store.models import Base

config = context.config
engine = config.attributes.get("engine")
if engine is None:  # `alembic` run by hand: the URL is in the ini's sqlalchemy.url
    from gateway.store.engine import make_engine

    engine = make_engine(config.get_main_option("sqlalchemy.url", ""))  # none: reported as not a database URL

with engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    context.run_migrations()
