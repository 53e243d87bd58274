"""The types every layer shares: references, signatures, manifests, the runtime contract, requests.

Nothing here imports the registry, the runtimes or a transport; they all
import this.
"""
