"""Finite benchmark POMDPs: Tiger, switching Tiger and RockSample(n, k), as :class:`DiscretePOMDP`.

Tiger (Kaelbling, Littman & Cassandra, 1998). States ``tiger-left``, ``tiger-right``; actions
``listen``, ``open-left``, ``open-right``; observations ``hear-left``, ``hear-right``. Listening costs
1 and hears the tiger's side with probability ``accuracy``; opening the tiger's door costs 100, the
other door pays 10. Opening a door resets the problem: the tiger is put behind either door with
probability 1/2 and the observation that follows is uninformative, so the belief returns to (1/2, 1/2).

The switching Tiger moves the tiger to the other door with probability ``flip`` at every listening
step, so a listener's belief forgets where it started: for two beliefs ``b, b'`` the prediction step
maps ``b(left) - b'(left)`` to ``(1 - 2 flip) (b(left) - b'(left))`` and contracts the Hilbert metric by
the Birkhoff coefficient ``|1 - 2 flip|``; the Bayes update by an observation preserves the Hilbert
metric, so ``d_H(b_t, b'_t) <= |1 - 2 flip|^t d_H(b_0, b'_0)`` along every listening history.

RockSample(n, k) (Smith & Simmons, 2004): a rover on an ``n x n`` grid with ``k`` rocks, each good or
bad (unknown, 1/2 each at the start). State = (column, row, rock bits) plus one absorbing terminal
state: ``n^2 2^k + 1`` states (257 for RockSample(4, 4)). Actions: north, south, east, west, sample,
check rock ``i`` for ``i < k``. Moves are blocked by the walls, except east from the last column,
which exits (reward +10) into the terminal state. Sampling a good rock pays +10 and makes it bad; a
bad rock costs 10; sampling where there is no rock costs 100. Checking rock ``i`` observes ``good`` or
``bad``, correct with probability ``(1 + 2^(-d / half_distance)) / 2`` at Euclidean distance ``d``; every
other action observes ``none``. The rover starts at column 0, row ``n // 2``.
"""
from __future__ import annotations

import itertools

import numpy as np

from ._checks import positive
from .pomdp import DiscretePOMDP, discrete_pomdp

__all__ = ["tiger", "switching_tiger", "rocksample", "ROCKSAMPLE_4_4_ROCKS"]

LISTEN, OPEN_LEFT, OPEN_RIGHT = 0, 1, 2
TIGER_LEFT, TIGER_RIGHT = 0, 1

#: rock cells (column, row) of this package's RockSample(4, 4)
ROCKSAMPLE_4_4_ROCKS = ((0, 3), (1, 1), (2, 2), (3, 0))


def switching_tiger(flip: float = 0.1, accuracy: float = 0.85, listen_reward: float = -1.0,
                    wrong_door: float = -100.0, right_door: float = 10.0,
                    discount: float = 0.95) -> DiscretePOMDP:
    """The Tiger problem whose tiger changes door with probability ``flip`` at each listening step
    (``flip = 0``: the classic Tiger)."""
    if not 0.0 <= flip <= 1.0:
        raise ValueError(f"flip must lie in [0, 1], got {flip}")
    if not 0.0 <= accuracy <= 1.0:
        raise ValueError(f"accuracy must lie in [0, 1], got {accuracy}")
    stay = np.array([[1.0 - flip, flip], [flip, 1.0 - flip]])
    reset = np.full((2, 2), 0.5)
    hear = np.array([[accuracy, 1.0 - accuracy], [1.0 - accuracy, accuracy]])
    rewards = np.array([[listen_reward, listen_reward],
                        [wrong_door, right_door],  # open-left: the tiger is left / right
                        [right_door, wrong_door]])
    return discrete_pomdp(
        np.stack([stay, reset, reset]), np.stack([hear, reset, reset]), rewards, np.full(2, 0.5), discount,
        state_names=("tiger-left", "tiger-right"), action_names=("listen", "open-left", "open-right"),
        observation_names=("hear-left", "hear-right"))


def tiger(accuracy: float = 0.85, listen_reward: float = -1.0, wrong_door: float = -100.0,
          right_door: float = 10.0, discount: float = 0.95) -> DiscretePOMDP:
    """The classic Tiger problem (listen -1, wrong door -100, right door +10, accuracy 0.85, γ = 0.95)."""
    return switching_tiger(0.0, accuracy, listen_reward, wrong_door, right_door, discount)


def rocksample(size: int = 4, rocks=ROCKSAMPLE_4_4_ROCKS, half_distance: float = 2.0,
               discount: float = 0.95, exit_reward: float = 10.0, good_rock: float = 10.0,
               bad_rock: float = -10.0, no_rock: float = -100.0) -> DiscretePOMDP:
    """RockSample(size, len(rocks)) with rocks at the given (column, row) cells (see the module)."""
    rocks = tuple((int(c), int(r)) for c, r in rocks)
    if size < 1 or not rocks or len(set(rocks)) != len(rocks) or any(
            not (0 <= c < size and 0 <= r < size) for c, r in rocks):
        raise ValueError(f"rocks must be distinct cells of the {size}x{size} grid, got {rocks}")
    positive(half_distance, "half_distance")
    k = len(rocks)
    cells = list(itertools.product(range(size), range(size)))  # (column, row)
    states = [(c, r, bits) for c, r in cells for bits in range(2 ** k)]
    index = {s: i for i, s in enumerate(states)}
    terminal = len(states)
    n_states, n_actions = terminal + 1, 5 + k
    NONE, GOOD, BAD = 0, 1, 2
    T = np.zeros((n_actions, n_states, n_states))
    Z = np.zeros((n_actions, n_states, 3))
    R = np.zeros((n_actions, n_states))
    T[:, terminal, terminal] = 1.0
    Z[:, :, NONE] = 1.0  # every action observes "none" except the checks (set below)
    rock_at = {cell: i for i, cell in enumerate(rocks)}
    for (c, r, bits), s in index.items():
        for a, (dc, dr) in enumerate(((0, 1), (0, -1), (1, 0), (-1, 0))):  # north, south, east, west
            if dc == 1 and c == size - 1:
                T[a, s, terminal], R[a, s] = 1.0, exit_reward
            else:
                nc, nr = min(max(c + dc, 0), size - 1), min(max(r + dr, 0), size - 1)
                T[a, s, index[(nc, nr, bits)]] = 1.0
        if (c, r) in rock_at:
            i = rock_at[(c, r)]
            good = bits >> i & 1
            R[4, s] = good_rock if good else bad_rock
            T[4, s, index[(c, r, bits & ~(1 << i))]] = 1.0
        else:
            R[4, s], T[4, s, s] = no_rock, 1.0
        for i, (rc, rr) in enumerate(rocks):
            a = 5 + i
            T[a, s, s] = 1.0
            accuracy = 0.5 * (1.0 + 2.0 ** (-np.hypot(rc - c, rr - r) / half_distance))
            truth, lie = (GOOD, BAD) if bits >> i & 1 else (BAD, GOOD)
            Z[a, s, NONE], Z[a, s, truth], Z[a, s, lie] = 0.0, accuracy, 1.0 - accuracy
    b0 = np.zeros(n_states)
    start = [index[(0, size // 2, bits)] for bits in range(2 ** k)]
    b0[start] = 1.0 / len(start)
    state_names = [f"({c},{r}):{bits:0{k}b}" for c, r, bits in states] + ["terminal"]
    action_names = ["north", "south", "east", "west", "sample"] + [f"check{i}" for i in range(k)]
    return discrete_pomdp(T, Z, R, b0, discount, state_names=state_names, action_names=action_names,
                          observation_names=("none", "good", "bad"))
