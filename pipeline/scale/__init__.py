"""Scale-out over Ray (the optional ``stylize[ray]`` extra): many workers, GPUs and machines.

    cluster.py   joining or starting Ray, and how many workers of what shape a cluster holds
    folder.py    a photo folder spread over long-lived worker actors

Nothing here is imported unless a job asks for workers, so the one-process path never loads Ray.
"""
