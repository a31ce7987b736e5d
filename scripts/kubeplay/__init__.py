"""Run the Helm chart's pods as real containers with podman kube play: `python -m scripts.kubeplay`."""
