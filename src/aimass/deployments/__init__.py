"""Deployments: named endpoints over model versions, with traffic splits, shadows and canaries.

The desired state of each deployment lives in the registry database
(:mod:`~aimass.deployments.spec`, :mod:`~aimass.deployments.store`); every
server converges to it and routes a deployment's requests by it.
"""
