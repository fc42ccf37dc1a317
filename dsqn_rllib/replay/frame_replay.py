"""Frame replay memory for Atari DQN: every frame stored once, as uint8, for many env streams.

A DQN transition ``(s, a, r, s', done)`` on Atari holds two stacks of 4 frames that overlap in
3 of them, and consecutive transitions share 3 more. Storing stacks would cost
``2 * 4 * 84 * 84`` bytes per transition (56 GB for 1M); this buffer stores each 84x84 frame
once (7 GB for 1M, :meth:`FrameReplayBuffer.bytes_needed`) and rebuilds the stacks on
:meth:`~FrameReplayBuffer.sample`, like Dopamine's ``OutOfGraphReplayBuffer`` but with one ring
per environment stream, so that E envs stepped in lockstep each append their own sequence.

The stream protocol is that of ``ale_py.vector_env.AtariVectorEnv`` with its default autoreset
mode ``NEXT_STEP``. One *entry* is one observation of one stream, with what the runner learned
by stepping from it::

    frame      obs_t[-1], the newest frame of the stacked observation obs_t
    action     a_t, the action taken at obs_t
    reward     r_t, terminated_t, truncated_t: what env.step(a_t) returned
    episode_start  obs_t is the first observation of an episode
    valid      False when obs_t is an episode's final observation: the env ignores a_t and
               returns the reset observation with reward 0

so one stream reads ``[start] o0, o1, ..., ok (valid=False), [start] o0', ...``.
:class:`StreamTracker` derives ``episode_start`` and ``valid`` from the env's flags.

The transition at entry ``j`` (only when ``valid_j``, entry ``j + 1`` is written and is not an
episode start) is::

    s  = the stack of frames j-3 .. j,     a_j, r_j
    s' = the stack of frames j-2 .. j+1,   done = terminated_j

Frames older than the episode start of a stack are zeros, exactly as the env pads them, and a
truncated transition bootstraps from the final observation (``done = 0``).

Env-runner loop (``E`` envs, stream ids ``ids``; rows are buffered over ``L`` steps)::

    tracker = StreamTracker(E)
    obs, _ = env.reset()
    start, valid = tracker.reset()
    while True:
        action = policy(obs)
        next_obs, reward, terminated, truncated, _ = env.step(action)
        rows.append((newest_frames(obs), action, reward, terminated, truncated, start, valid))
        start, valid = tracker.step(terminated, truncated)
        obs = next_obs
        ...  # every L steps: buffer.add_chunk(ids, *stack the rows along axis 1)

This module is pure numpy: it imports neither Ray nor torch, so env runners and tests can use
it anywhere.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from dsqn_rllib.errors import require_int

# Storage dtype of each per-entry field (frames are uint8 pixels).
FRAME_DTYPE = np.uint8
ACTION_DTYPE = np.int64
REWARD_DTYPE = np.float32
FLAG_FIELDS = ("terminated", "truncated", "episode_start", "valid")
"""The boolean per-entry fields, one byte each."""

# Bytes one entry costs besides its frame: action, reward and the four flags.
_BYTES_PER_ENTRY_BESIDES_FRAME = (
    np.dtype(ACTION_DTYPE).itemsize + np.dtype(REWARD_DTYPE).itemsize + len(FLAG_FIELDS)
)

# Candidates drawn per missing sample in each rejection round: a little more than one, so that
# one round usually suffices when a few candidates are rejected (final obs, the newest entry).
_OVERDRAW = 1.25
_MAX_REJECTION_ROUNDS = 1_000


@dataclass(frozen=True)
class ReplayConfig:
    """Size and shape of the replay memory; validated on construction (one-line ``ValueError``)."""

    capacity: int = 1_000_000
    """Entries (frames) over all streams together: 1M transitions, Mnih et al. 2015 (Methods,
    "replay memory size"). Each of the E streams gets ``capacity // E`` of them."""
    frame_shape: tuple[int, ...] = (84, 84)
    """Shape of one preprocessed frame: 84x84 grayscale (Mnih et al. 2015); (H, W, 3) for RGB."""
    frame_stack: int = 4
    """Frames per observation, newest last (Mnih et al. 2015: "the 4 most recent frames")."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "frame_shape", tuple(self.frame_shape))
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` with one line naming the first bad field."""
        require_int("ReplayConfig.capacity", self.capacity, 1)
        require_int("ReplayConfig.frame_stack", self.frame_stack, 1)
        if not self.frame_shape or any(
            isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1
            for size in self.frame_shape
        ):
            raise ValueError(
                f"ReplayConfig.frame_shape must be a non-empty tuple of positive ints, "
                f"got {self.frame_shape!r}"
            )
        if self.capacity < self.frame_stack + 1:
            raise ValueError(
                f"ReplayConfig.capacity must hold one transition (frame_stack + 1 = "
                f"{self.frame_stack + 1} entries), got {self.capacity}"
            )


class ReplayBatch(NamedTuple):
    """A batch of B transitions; the stacks are rebuilt from single frames, newest last."""

    obs: np.ndarray
    """(B, stack, *frame_shape) uint8: s, zero frames before the episode start."""
    actions: np.ndarray
    """(B,) int64: a."""
    rewards: np.ndarray
    """(B,) float32: r."""
    next_obs: np.ndarray
    """(B, stack, *frame_shape) uint8: s' (the final observation when the episode ended)."""
    terminated: np.ndarray
    """(B,) float32: 1.0 when s' is terminal (no bootstrap); truncation is not termination."""
    stream_ids: np.ndarray
    """(B,) int64: the stream each transition came from."""
    entry_ids: np.ndarray
    """(B,) int64: the index of s's entry in its stream, counted from the stream's first add."""
    n_steps: np.ndarray
    """(B,) float32: env steps m from s to s' (1 unless sampled with ``n_step > 1``); ``rewards``
    is then ``sum_k gamma**k r_{t+k}`` over those m steps and the target discounts s' by
    ``gamma**m``."""


def newest_frames(stacked_obs: np.ndarray) -> np.ndarray:
    """The newest frame of each env's stacked observation: ``(E, stack, *frame) -> (E, *frame)``.

    For grayscale Atari observations ``(E, 4, 84, 84)`` this is ``stacked_obs[:, -1]``: one step's
    ``frames`` for :meth:`FrameReplayBuffer.add_chunk` (stack L of them along axis 1).
    """
    stacked_obs = np.asarray(stacked_obs)
    if stacked_obs.ndim < 3:
        raise ValueError(
            f"newest_frames expects (E, stack, *frame_shape) observations, got {stacked_obs.shape}"
        )
    return stacked_obs[:, -1]


def next_episode_flags(
    prev_obs_was_final: np.ndarray, terminated: np.ndarray, truncated: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Episode flags of the observations a NEXT_STEP-autoreset vector env just returned.

    ``prev_obs_was_final``: whether the observation the step was taken from was an episode's
    final observation (then the env ignored the action and returned a reset observation).
    Returns ``(episode_start, valid, obs_is_final)`` for the returned observations.
    """
    episode_start = np.asarray(prev_obs_was_final, dtype=bool)
    obs_is_final = np.asarray(terminated, dtype=bool) | np.asarray(truncated, dtype=bool)
    return episode_start.copy(), ~obs_is_final, obs_is_final


class StreamTracker:
    """Turns a vector env's (terminated, truncated) flags into ``episode_start`` / ``valid``.

    ``reset()`` gives the flags of the observations of ``env.reset()`` (all starts, all valid);
    ``step(terminated, truncated)`` gives those of the observations that ``env.step`` returned
    together with these flags: an observation returned with terminated | truncated is a final
    observation (``valid=False``), and the one after it is a start. Its only state is which
    envs' last observation was final (:func:`next_episode_flags` is the pure rule).
    """

    def __init__(self, num_envs: int) -> None:
        require_int("StreamTracker.num_envs", num_envs, 1)
        self.num_envs = num_envs
        self.obs_is_final = np.zeros(num_envs, dtype=bool)

    def reset(self) -> tuple[np.ndarray, np.ndarray]:
        """Flags of the first observations of a run: ``(episode_start, valid)``, all True."""
        self.obs_is_final = np.zeros(self.num_envs, dtype=bool)
        return np.ones(self.num_envs, dtype=bool), np.ones(self.num_envs, dtype=bool)

    def step(self, terminated: np.ndarray, truncated: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Flags ``(episode_start, valid)`` of the observations returned with these flags."""
        terminated = np.asarray(terminated, dtype=bool)
        truncated = np.asarray(truncated, dtype=bool)
        if terminated.shape != (self.num_envs,) or truncated.shape != (self.num_envs,):
            raise ValueError(
                f"StreamTracker.step expects flags of shape ({self.num_envs},), "
                f"got {terminated.shape} and {truncated.shape}"
            )
        episode_start, valid, self.obs_is_final = next_episode_flags(
            self.obs_is_final, terminated, truncated
        )
        return episode_start, valid


def _stack_keep_mask(starts: np.ndarray) -> np.ndarray:
    """Which frames of a stack belong to its newest frame's episode.

    ``starts`` (B, stack): whether each stack position (oldest first) starts an episode.
    Position i is kept unless an episode starts at a later position i+1 .. stack-1.
    """
    later_start = np.zeros_like(starts)
    # later_start[:, i] = any(starts[:, i+1:]): a reversed running "or" over the later positions.
    later_start[:, :-1] = np.logical_or.accumulate(starts[:, :0:-1], axis=1)[:, ::-1]
    return ~later_start


class FrameReplayBuffer:
    """Uniform replay over E streams, each a ring of ``capacity // E`` single-frame entries.

    Entry ``n`` of stream ``e`` (counted from the first add) lives in slot ``n % ring_capacity``
    of ring ``e``. A transition at entry ``n`` is sampleable when ``valid[n]``, entry ``n + 1``
    is written and does not start an episode, and entries ``n - stack + 1 .. n + 1`` all still
    hold their own frames (the conservative rule: it also drops the few transitions right at the
    ring's oldest edge whose episode started late enough not to need the overwritten frames).
    """

    def __init__(
        self,
        capacity: int,
        num_streams: int,
        frame_shape: tuple[int, ...] = (84, 84),
        frame_stack: int = 4,
        seed: int | None = None,
        frame_dtype: np.dtype | type = FRAME_DTYPE,
    ) -> None:
        config = ReplayConfig(capacity, tuple(frame_shape), frame_stack)
        require_int("FrameReplayBuffer.num_streams", num_streams, 1)
        ring_capacity = capacity // num_streams
        if ring_capacity < frame_stack + 1:
            raise ValueError(
                f"FrameReplayBuffer: capacity {capacity} over {num_streams} streams leaves "
                f"{ring_capacity} entries per stream, fewer than frame_stack + 1 = "
                f"{frame_stack + 1}"
            )
        self.config = config
        self.num_streams = num_streams
        self.ring_capacity = ring_capacity
        self.frame_shape: tuple[int, ...] = config.frame_shape
        self.frame_stack = frame_stack
        self._rng = np.random.default_rng(seed)

        rings = (num_streams, ring_capacity)
        # np.zeros maps untouched pages lazily: physical memory grows as the rings fill.
        # uint8 for Atari pixels; float32 for vector observations (frame_stack 1).
        self.frame_dtype = np.dtype(frame_dtype)
        self.frames = np.zeros((*rings, *self.frame_shape), dtype=self.frame_dtype)
        self.actions = np.zeros(rings, dtype=ACTION_DTYPE)
        self.rewards = np.zeros(rings, dtype=REWARD_DTYPE)
        self.terminated = np.zeros(rings, dtype=bool)
        self.truncated = np.zeros(rings, dtype=bool)
        self.episode_start = np.zeros(rings, dtype=bool)
        self.valid = np.zeros(rings, dtype=bool)
        self.entries_written = np.zeros(num_streams, dtype=np.int64)
        """Entries each stream has ever written (its next entry index)."""

    @classmethod
    def from_config(
        cls, config: ReplayConfig, num_streams: int, seed: int | None = None
    ) -> FrameReplayBuffer:
        """A buffer of ``config``'s capacity and shapes split over ``num_streams`` streams."""
        return cls(config.capacity, num_streams, config.frame_shape, config.frame_stack, seed)

    @staticmethod
    def bytes_needed(capacity: int, frame_shape: tuple[int, ...] = (84, 84)) -> int:
        """Bytes of the rings for ``capacity`` entries: one uint8 frame plus 16 bytes each."""
        return int(capacity) * (math.prod(frame_shape) + _BYTES_PER_ENTRY_BESIDES_FRAME)

    @property
    def nbytes(self) -> int:
        """Bytes allocated for the rings (reserved up front, touched as they fill)."""
        return sum(
            array.nbytes
            for array in (self.frames, self.actions, self.rewards, *self._flag_arrays())
        )

    def _flag_arrays(self) -> tuple[np.ndarray, ...]:
        return tuple(getattr(self, name) for name in FLAG_FIELDS)

    def __len__(self) -> int:
        """Entries currently stored over all streams."""
        return int(np.minimum(self.entries_written, self.ring_capacity).sum())

    # ------------------------------------------------------------------------------------------
    # Writing

    def add_chunk(
        self,
        stream_ids: np.ndarray,
        frames: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
        episode_start: np.ndarray,
        valid: np.ndarray,
    ) -> None:
        """Append L consecutive entries to each of E distinct streams.

        ``stream_ids`` (E,); ``frames`` (E, L, *frame_shape) uint8, the newest frame of each
        observation (:func:`newest_frames`); the other arrays (E, L), see the module docstring.
        When L exceeds the ring, only its last ``ring_capacity`` entries are kept.
        """
        stream_ids = np.asarray(stream_ids)
        frames = np.asarray(frames)
        if stream_ids.ndim != 1 or not np.issubdtype(stream_ids.dtype, np.integer):
            raise ValueError(f"add_chunk: stream_ids must be a 1-D int array, got {stream_ids!r}")
        if stream_ids.size and (stream_ids.min() < 0 or stream_ids.max() >= self.num_streams):
            raise ValueError(
                f"add_chunk: stream_ids must be in [0, {self.num_streams}), got {stream_ids}"
            )
        if np.unique(stream_ids).size != stream_ids.size:
            raise ValueError(f"add_chunk: stream_ids must be distinct, got {stream_ids}")
        num_chunk_streams = stream_ids.size
        if frames.dtype != self.frame_dtype:
            raise ValueError(f"add_chunk: frames must be {self.frame_dtype}, got {frames.dtype}")
        if frames.ndim != 2 + len(self.frame_shape) or frames.shape[0] != num_chunk_streams:
            raise ValueError(
                f"add_chunk: frames must have shape (E={num_chunk_streams}, L, "
                f"*{self.frame_shape}), got {frames.shape}"
            )
        if frames.shape[2:] != self.frame_shape:
            raise ValueError(
                f"add_chunk: frames must have shape (E, L, *{self.frame_shape}), got {frames.shape}"
            )
        chunk_len = frames.shape[1]
        per_step = {
            "actions": actions,
            "rewards": rewards,
            "terminated": terminated,
            "truncated": truncated,
            "episode_start": episode_start,
            "valid": valid,
        }
        for name, value in per_step.items():
            shape = np.shape(value)
            if shape != (num_chunk_streams, chunk_len):
                raise ValueError(
                    f"add_chunk: {name} must have shape (E, L) = "
                    f"{(num_chunk_streams, chunk_len)}, got {shape}"
                )
        if chunk_len == 0 or num_chunk_streams == 0:
            return

        # A chunk longer than the ring would overwrite itself: keep its newest entries only.
        kept = min(chunk_len, self.ring_capacity)
        steps = np.arange(chunk_len - kept, chunk_len)
        slots = (self.entries_written[stream_ids, None] + steps) % self.ring_capacity
        rows = stream_ids[:, None] * self.ring_capacity + slots  # in the flattened rings
        self.frames.reshape(-1, *self.frame_shape)[rows] = frames[:, chunk_len - kept :]
        for name, value in per_step.items():
            getattr(self, name).reshape(-1)[rows] = np.asarray(value)[:, chunk_len - kept :]
        self.entries_written[stream_ids] += chunk_len

    # ------------------------------------------------------------------------------------------
    # Reading

    def _candidate_windows(self) -> tuple[np.ndarray, np.ndarray]:
        """Per stream, the entry range [first, first + count) that may hold transitions.

        The newest entry has no successor yet; once a ring has wrapped, the oldest
        ``frame_stack - 1`` entries lack the older frames of their stack.
        """
        written = self.entries_written
        overwritten = np.maximum(written - self.ring_capacity, 0)
        first = np.where(overwritten > 0, overwritten + self.frame_stack - 1, 0)
        count = np.maximum(written - 1 - first, 0)
        return first, count

    def _is_transition(self, stream_ids: np.ndarray, entry_ids: np.ndarray) -> np.ndarray:
        """Whether entries (inside their candidate window) start a stored transition."""
        slots = entry_ids % self.ring_capacity
        next_slots = (entry_ids + 1) % self.ring_capacity
        return self.valid[stream_ids, slots] & ~self.episode_start[stream_ids, next_slots]

    @property
    def num_sampleable(self) -> int:
        """Transitions :meth:`sample` can return now (exact; costs O(capacity) to count)."""
        first, count = self._candidate_windows()
        total = 0
        for stream in np.flatnonzero(count):
            entries = first[stream] + np.arange(count[stream])
            total += int(self._is_transition(np.full_like(entries, stream), entries).sum())
        return total

    def sample(
        self,
        batch_size: int,
        rng: np.random.Generator | None = None,
        n_step: int = 1,
        gamma: float = 0.99,
    ) -> ReplayBatch:
        """``batch_size`` transitions drawn uniformly (with replacement) from all streams.

        Candidates are drawn uniformly over every stream's candidate window (so a fuller stream
        is drawn proportionally more often), those that are no transition are rejected, and the
        missing ones are redrawn: the accepted ones are uniform over stored transitions.

        With ``n_step > 1`` each transition spans up to ``n_step`` env steps of its episode
        (fewer where the episode ends or the stream's newest entry comes first): the n-step
        return of Sutton 1988 / Hessel et al. 2018, uncorrected for the off-policy actions.
        """
        require_int("sample: batch_size", batch_size, 1)
        require_int("sample: n_step", n_step, 1)
        rng = self._rng if rng is None else rng
        first, count = self._candidate_windows()
        window_ends = np.cumsum(count)
        num_candidates = int(window_ends[-1])
        if num_candidates == 0:
            raise ValueError(
                f"sample: no transition stored yet ({len(self)} entries; a transition needs its "
                f"next entry written)"
            )
        stream_parts: list[np.ndarray] = []
        entry_parts: list[np.ndarray] = []
        missing = batch_size
        for _ in range(_MAX_REJECTION_ROUNDS):
            draws = rng.integers(0, num_candidates, size=math.ceil(missing * _OVERDRAW) + 1)
            streams = np.searchsorted(window_ends, draws, side="right")
            entries = first[streams] + draws - (window_ends[streams] - count[streams])
            accepted = self._is_transition(streams, entries)
            if not accepted.any() and self.num_sampleable == 0:
                raise ValueError(
                    f"sample: no transition stored yet ({len(self)} entries, all of them final "
                    f"observations or waiting for their next entry)"
                )
            streams, entries = streams[accepted][:missing], entries[accepted][:missing]
            stream_parts.append(streams)
            entry_parts.append(entries)
            missing -= streams.size
            if missing == 0:
                break
        else:  # pragma: no cover - needs a buffer of almost only rejected candidates
            raise RuntimeError(f"sample: still {missing} transitions short after many redraws")
        stream_ids, entry_ids = np.concatenate(stream_parts), np.concatenate(entry_parts)
        if n_step == 1:
            return self._gather(stream_ids, entry_ids)
        return self._gather_n_step(stream_ids, entry_ids, n_step, gamma)

    def _episode_ends(self, stream_ids: np.ndarray, entry_ids: np.ndarray) -> np.ndarray:
        slots = entry_ids % self.ring_capacity
        return self.terminated[stream_ids, slots] | self.truncated[stream_ids, slots]

    def _gather_n_step(
        self, stream_ids: np.ndarray, entry_ids: np.ndarray, n_step: int, gamma: float
    ) -> ReplayBatch:
        """The transitions at these entries, extended over up to ``n_step`` steps each."""
        one_step = self._gather(stream_ids, entry_ids)
        rewards = one_step.rewards.astype(np.float64)
        steps = np.ones(entry_ids.shape, dtype=np.int64)
        # A transition extends to entry n + k while its episode goes on and n + k is a stored
        # transition itself (its successor written): never past the stream's newest entry.
        going_on = ~self._episode_ends(stream_ids, entry_ids)
        newest_with_successor = self.entries_written[stream_ids] - 2
        for k in range(1, n_step):
            entries = entry_ids + k
            going_on &= entries <= newest_with_successor
            going_on &= self._is_transition(stream_ids, entries)
            if not going_on.any():
                break
            slots = entries % self.ring_capacity
            rewards += np.where(going_on, gamma**k * self.rewards[stream_ids, slots], 0.0)
            steps += going_on
            going_on &= ~self._episode_ends(stream_ids, entries)
        last = entry_ids + steps - 1  # the entry of the last step; s' is its successor's stack
        next_obs = self._stacks(stream_ids, last + 1)
        last_slots = last % self.ring_capacity
        return one_step._replace(
            rewards=rewards.astype(np.float32),
            next_obs=next_obs,
            terminated=self.terminated[stream_ids, last_slots].astype(np.float32),
            n_steps=steps.astype(np.float32),
        )

    def _stacks(self, stream_ids: np.ndarray, entry_ids: np.ndarray) -> np.ndarray:
        """The observation stacks ending at these entries (frames before its episode zeroed)."""
        window_entries = entry_ids[:, None] + np.arange(-self.frame_stack + 1, 1)
        window_rows = stream_ids[:, None] * self.ring_capacity + (
            window_entries % self.ring_capacity
        )
        starts = self.episode_start.reshape(-1)[window_rows] | (window_entries == 0)
        stacks = self.frames.reshape(-1, *self.frame_shape)[window_rows]
        stacks[~_stack_keep_mask(starts)] = 0
        return stacks

    def _gather(self, stream_ids: np.ndarray, entry_ids: np.ndarray) -> ReplayBatch:
        """Rebuild the transitions at these entries: the stacks of frames n-stack+1 .. n+1."""
        stack = self.frame_stack
        # Window position i holds entry n - stack + 1 + i: s is positions 0..stack-1, s' 1..stack.
        window_entries = entry_ids[:, None] + np.arange(-stack + 1, 2)
        window_slots = window_entries % self.ring_capacity
        # Index the rings as one flat run of entries: a 1-D gather is twice as fast as a 2-D one.
        window_rows = stream_ids[:, None] * self.ring_capacity + window_slots
        frames_by_row = self.frames.reshape(-1, *self.frame_shape)
        # Frames before a stream's first entry are zeros too (entry 0 counts as a start), even
        # if its first entry is not flagged as one and a full ring holds other frames there.
        starts = self.episode_start.reshape(-1)[window_rows] | (window_entries == 0)
        # One gather for both stacks; obs and next_obs are contiguous halves of its result.
        obs_and_next = frames_by_row[np.stack([window_rows[:, :stack], window_rows[:, 1:]])]
        obs_and_next[0][~_stack_keep_mask(starts[:, :stack])] = 0
        obs_and_next[1][~_stack_keep_mask(starts[:, 1:])] = 0
        obs, next_obs = obs_and_next
        slots = entry_ids % self.ring_capacity
        return ReplayBatch(
            obs=obs,
            actions=self.actions[stream_ids, slots].astype(np.int64),
            rewards=self.rewards[stream_ids, slots].astype(np.float32),
            next_obs=next_obs,
            terminated=self.terminated[stream_ids, slots].astype(np.float32),
            stream_ids=stream_ids.astype(np.int64),
            entry_ids=entry_ids.astype(np.int64),
            n_steps=np.ones(entry_ids.shape, dtype=np.float32),
        )


# ----------------------------------------------------------------------------------------------
# Throughput


class ReplayThroughput(NamedTuple):
    """What :func:`benchmark` measured."""

    add_frames_per_s: float
    sample_batches_per_s: dict[int, float]


def benchmark(
    capacity: int = 100_000,
    num_streams: int = 8,
    chunk_len: int = 32,
    batch_sizes: tuple[int, ...] = (32, 128),
    seconds: float = 1.0,
    seed: int = 0,
) -> ReplayThroughput:
    """Measure add rate (frames/s, in chunks) and sample rate (batches/s) on 84x84 frames."""
    buffer = FrameReplayBuffer(capacity, num_streams, seed=seed)
    rng = np.random.default_rng(seed)
    shape = (num_streams, chunk_len)
    frames = rng.integers(0, 256, (*shape, *buffer.frame_shape), dtype=np.uint8)
    actions = rng.integers(0, 18, shape)
    rewards = rng.standard_normal(shape).astype(np.float32)
    # About 1% of the steps end an episode: the next entry is final, the one after a start.
    ends = rng.random(shape) < 0.01
    final = np.roll(ends, 1, axis=1)
    starts = np.roll(ends, 2, axis=1)
    no_truncation = np.zeros(shape, dtype=bool)
    stream_ids = np.arange(num_streams)

    # The first pass over the rings also pays for the OS mapping their pages; the second is
    # the steady state of a long run.
    chunks_per_pass = math.ceil(buffer.ring_capacity / chunk_len)
    frames_per_chunk = num_streams * chunk_len
    add_rates = []
    for _ in range(2):
        start = time.perf_counter()
        for _ in range(chunks_per_pass):
            buffer.add_chunk(
                stream_ids, frames, actions, rewards, ends, no_truncation, starts, ~final
            )
        add_rates.append(chunks_per_pass * frames_per_chunk / (time.perf_counter() - start))
    add_rate = add_rates[1]
    print(
        f"add: {add_rate:,.0f} frames/s ({add_rates[0]:,.0f} on the first pass), chunks of "
        f"{num_streams} streams x {chunk_len} steps, capacity {capacity:,}"
    )

    sample_rates: dict[int, float] = {}
    for batch_size in batch_sizes:
        batches = 0
        start = time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds:
            buffer.sample(batch_size, rng)
            batches += 1
        sample_rates[batch_size] = batches / elapsed
        print(f"sample: {sample_rates[batch_size]:,.0f} batches/s of {batch_size}")
    return ReplayThroughput(add_rate, sample_rates)


if __name__ == "__main__":
    benchmark()
