# The offline base image: a root filesystem made by `mkrootfs` from this
# machine's Debian packages (bash, BIND's named, nft, ip and their libraries).
#   testnet/docker/mkrootfs testnet/docker/.build/rootfs
#   docker build -f testnet/docker/base.Dockerfile -t oemesh-testnet-base:local testnet/docker/.build
FROM scratch
COPY rootfs/ /
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
CMD ["/bin/bash"]
