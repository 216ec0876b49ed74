# syntax=docker/dockerfile:1
# scangate image: compile TypeScript in a full Node image, ship only dist/src, package.json and the
# production node_modules on distroless Node 20 as the "nonroot" user (uid 65532, which the Deployment's
# runAsUser names). `make image` builds it; the Deployment runs it with a read-only root filesystem.

FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
# tsconfig also includes test/**; the build context has no tests (.dockerignore), so only src compiles.
# Nor has it the scanner simulator (simulator/, a developer tool): npm links the workspace anyway, and
# the link, dangling here, goes, with every mention of it (package.json's dev fields, npm's hidden lockfile).
RUN npx tsc -p tsconfig.json \
 && npm prune --omit=dev --ignore-scripts \
 && npm pkg delete devDependencies workspaces scripts \
 && rm -rf dist/test node_modules/@scangate node_modules/.package-lock.json

FROM gcr.io/distroless/nodejs20-debian12:nonroot
WORKDIR /app
ENV NODE_ENV=production
COPY --from=build --chown=65532:65532 /app/package.json ./package.json
COPY --from=build --chown=65532:65532 /app/node_modules ./node_modules
COPY --from=build --chown=65532:65532 /app/dist/src ./dist/src
USER 65532:65532
EXPOSE 8443
ENTRYPOINT ["/nodejs/bin/node", "/app/dist/src/main.js"]
CMD ["serve"]
