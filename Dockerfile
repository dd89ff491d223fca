# syntax=docker/dockerfile:1
# xoauth-proxy: build with `docker build -t xoauth-proxy .`, run with a config mounted at /config/config.yaml
# and a volume for the token store at /data (see README "Docker").
#
# Node 24 is the LTS line that better-sqlite3 12 supports (its engines stop at 25.x; 13.x drops Node 20,
# which the development machines run), so image and development machines share one lockfile.
ARG NODE_IMAGE=node:24-bookworm-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /app
# better-sqlite3 compiles its native addon when no prebuilt binary matches.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
# Native optional packages (rolldown, esbuild) must match this image's libc, so install inside it.
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build && npm prune --omit=dev --no-audit --no-fund

FROM ${NODE_IMAGE}
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json config.example.yaml config.schema.json ./
# The image's `node` user, by number: Kubernetes' runAsNonRoot can only check a numeric USER.
RUN mkdir -p /data /config && chown 1000:1000 /data && chmod 700 /data
USER 1000:1000
VOLUME ["/data"]
# The HTTP listener's /healthz (see docs/operations.md); node itself asks, the slim image has no curl.
# Point XOAUTH_PROXY_HEALTH_URL elsewhere when the HTTP listener is not on port 8080.
ENV XOAUTH_PROXY_HEALTH_URL=http://127.0.0.1:8080/healthz
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch(process.env.XOAUTH_PROXY_HEALTH_URL).then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# Listeners must bind 0.0.0.0 inside the container to be reachable (config `listen.*.host`);
# publish them on the host's loopback only: docker run -p 127.0.0.1:1143:1143 ...
EXPOSE 1143 1587 1110 8080
ENTRYPOINT ["node", "dist/cli/main.js"]
CMD ["start", "--config", "/config/config.yaml"]
