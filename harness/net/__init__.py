"""Network pieces: PROXY protocol codec, load-balancer simulator, kube-proxy model."""
