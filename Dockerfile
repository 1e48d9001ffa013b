# rds-csi container image: one binary, every mode, configured from RDS_CSI_* environment variables.
#   docker build -t rds-csi:0.1.0 .
#   docker run --rm rds-csi:0.1.0 version

# Build: Bun comes from npm (the devDependency), so the only sources are this repository,
# package-lock.json and the npm registry.
FROM node:22-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY . .
RUN npm run build && ./dist/rds-csi version

# Runtime: glibc like the build stage (the compiled binary embeds the Bun runtime), plus what
# csi-node, gc and doctor call: nvme-cli, blkid/fsck/mkfs for ext4 and xfs, mount/umount/lsblk.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends nvme-cli e2fsprogs xfsprogs util-linux mount kmod ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/dist/rds-csi /usr/local/bin/rds-csi
# No USER: the node plugin must run as root to connect NVMe subsystems and mount.
ENTRYPOINT ["/usr/local/bin/rds-csi"]
CMD ["--help"]
