"""The frame replay memory against transitions built by hand and against a real AtariVectorEnv.

Synthetic streams emulate the NEXT_STEP autoreset protocol with tiny 2x3 frames whose pixels
encode (stream, entry), so any stale, shifted or wrongly zeroed frame fails an exact comparison.
The expected stacks are built independently, the way the env builds them: zeros at an episode's
first observation, then shift by one frame per step.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest

from dsqn_rllib.replay.frame_replay import (
    FrameReplayBuffer,
    ReplayBatch,
    ReplayConfig,
    StreamTracker,
    benchmark,
    newest_frames,
)

FRAME_SHAPE = (2, 3)
STACK = 4
TERMINATED, TRUNCATED = "terminated", "truncated"


@dataclass
class SyntheticStreams:
    """E streams of T entries each (the rows to add) and the true stacked observation of each."""

    frames: np.ndarray  # (E, T, 2, 3) uint8
    actions: np.ndarray  # (E, T)
    rewards: np.ndarray  # (E, T) float32
    terminated: np.ndarray  # (E, T) bool
    truncated: np.ndarray  # (E, T) bool
    episode_start: np.ndarray  # (E, T) bool
    valid: np.ndarray  # (E, T) bool
    stacks: np.ndarray  # (E, T, stack, 2, 3) uint8: the observation each entry's frame ends

    def rows(self, stream_ids: np.ndarray, begin: int, end: int) -> tuple[np.ndarray, ...]:
        """The add_chunk arguments for entries begin..end-1 of these streams."""
        ids = np.asarray(stream_ids)
        fields = (
            self.frames,
            self.actions,
            self.rewards,
            self.terminated,
            self.truncated,
            self.episode_start,
            self.valid,
        )
        return (ids, *(field[ids, begin:end] for field in fields))


def encode_frame(stream: int, entry: int) -> np.ndarray:
    """A frame no other (stream, entry) has, never all zero (pixel 0 is stream + 1)."""
    pixels = [stream + 1, (entry >> 16) & 255, (entry >> 8) & 255, entry & 255, 77, 200]
    return np.array(pixels, dtype=np.uint8).reshape(FRAME_SHAPE)


def make_streams(
    num_streams: int,
    num_entries: int,
    seed: int,
    *,
    stack: int = STACK,
    max_episode_steps: int = 6,
    plan: list[tuple[int, str]] | None = None,
) -> SyntheticStreams:
    """Emulate a NEXT_STEP autoreset vector env, one Python step at a time.

    Episodes last 1..max_episode_steps valid steps and end terminated or truncated at random,
    or follow ``plan`` ((valid steps, end) per episode, then at random). An episode of k steps
    has k + 1 entries: k valid observations, then its final observation (valid=False, whose
    action the env ignores and whose "reward" is the 0 of the reset step).
    """
    rng = np.random.default_rng(seed)
    shape = (num_streams, num_entries)
    streams = SyntheticStreams(
        frames=np.zeros((*shape, *FRAME_SHAPE), dtype=np.uint8),
        actions=rng.integers(0, 6, shape),
        rewards=np.zeros(shape, dtype=np.float32),
        terminated=np.zeros(shape, dtype=bool),
        truncated=np.zeros(shape, dtype=bool),
        episode_start=np.zeros(shape, dtype=bool),
        valid=np.zeros(shape, dtype=bool),
        stacks=np.zeros((*shape, stack, *FRAME_SHAPE), dtype=np.uint8),
    )
    for stream in range(num_streams):
        episodes = list(plan or [])
        steps_left = 0
        obs_is_final = True  # the run's first observation starts an episode
        stack_now = np.zeros((stack, *FRAME_SHAPE), dtype=np.uint8)
        end = TERMINATED
        for entry in range(num_entries):
            frame = encode_frame(stream, entry)
            if obs_is_final:  # this observation is the reset observation
                streams.episode_start[stream, entry] = True
                stack_now = np.zeros_like(stack_now)
                steps_left, end = (
                    episodes.pop(0)
                    if episodes
                    else (
                        int(rng.integers(1, max_episode_steps + 1)),
                        str(rng.choice([TERMINATED, TRUNCATED])),
                    )
                )
                obs_is_final = False
            else:
                stack_now = np.roll(stack_now, -1, axis=0)
            stack_now[-1] = frame
            streams.frames[stream, entry] = frame
            streams.stacks[stream, entry] = stack_now
            if steps_left == 0:  # the final observation: the next step resets, reward 0
                obs_is_final = True
                continue
            streams.valid[stream, entry] = True
            streams.rewards[stream, entry] = np.float32(rng.normal())
            steps_left -= 1
            if steps_left == 0:
                getattr(streams, end)[stream, entry] = True
    return streams


def add_in_chunks(
    buffer: FrameReplayBuffer,
    streams: SyntheticStreams,
    stream_ids: np.ndarray,
    begin: int,
    end: int,
    rng: np.random.Generator,
    max_chunk: int,
    after_each_chunk: Callable[[], None] = lambda: None,
) -> None:
    """Add entries begin..end-1 of these streams in chunks of random length 1..max_chunk."""
    while begin < end:
        length = min(int(rng.integers(1, max_chunk + 1)), end - begin)
        buffer.add_chunk(*streams.rows(stream_ids, begin, begin + length))
        begin += length
        after_each_chunk()


def stored_transitions(
    streams: SyntheticStreams, entries_written: np.ndarray, ring_capacity: int, stack: int
) -> set[tuple[int, int]]:
    """(stream, entry) of every transition the buffer may return, by the documented rule."""
    transitions = set()
    for stream, written in enumerate(entries_written):
        oldest_kept = max(int(written) - ring_capacity, 0)
        for entry in range(int(written) - 1):
            in_ring = oldest_kept == 0 or entry - stack + 1 >= oldest_kept
            next_is_start = streams.episode_start[stream, entry + 1]
            if in_ring and streams.valid[stream, entry] and not next_is_start:
                transitions.add((stream, entry))
    return transitions


def assert_true_transitions(
    batch: ReplayBatch, streams: SyntheticStreams, entries_written: np.ndarray
) -> None:
    """Every sampled transition equals the env's: stacks, action, reward and termination."""
    ids, entries = batch.stream_ids, batch.entry_ids
    assert (entries + 1 < entries_written[ids]).all(), "sampled an entry without a successor"
    assert streams.valid[ids, entries].all(), "sampled a final observation as s"
    np.testing.assert_array_equal(batch.obs, streams.stacks[ids, entries])
    np.testing.assert_array_equal(batch.next_obs, streams.stacks[ids, entries + 1])
    np.testing.assert_array_equal(batch.actions, streams.actions[ids, entries])
    np.testing.assert_array_equal(batch.rewards, streams.rewards[ids, entries])
    np.testing.assert_array_equal(batch.terminated, streams.terminated[ids, entries])


def test_synthetic_stacks_are_zero_padded_and_shift() -> None:
    """The test's own env emulation: pad with zeros at a start, then shift one frame a step."""
    streams = make_streams(1, 6, seed=0, plan=[(1, TERMINATED), (2, TRUNCATED)])
    # Entries: o0 start, o1 final | o0' start, o1', o2' final | o0'' start.
    np.testing.assert_array_equal(streams.episode_start[0], [1, 0, 1, 0, 0, 1])
    np.testing.assert_array_equal(streams.valid[0], [1, 0, 1, 1, 0, 1])
    np.testing.assert_array_equal(streams.terminated[0], [1, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(streams.truncated[0], [0, 0, 0, 1, 0, 0])
    zero = np.zeros(FRAME_SHAPE, dtype=np.uint8)
    frame = [encode_frame(0, entry) for entry in range(6)]
    np.testing.assert_array_equal(streams.stacks[0, 1], [zero, zero, frame[0], frame[1]])
    np.testing.assert_array_equal(streams.stacks[0, 4], [zero, frame[2], frame[3], frame[4]])
    np.testing.assert_array_equal(streams.stacks[0, 5], [zero, zero, zero, frame[5]])


# ----------------------------------------------------------------------------------------------
# Configuration and input validation


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"capacity": 0}, "capacity"),
        ({"capacity": 2.5}, "capacity"),
        ({"capacity": True}, "capacity"),
        ({"capacity": 4}, "capacity"),  # fewer than frame_stack + 1 entries
        ({"frame_stack": 0}, "frame_stack"),
        ({"frame_shape": ()}, "frame_shape"),
        ({"frame_shape": (84, 0)}, "frame_shape"),
        ({"frame_shape": (84, 84.0)}, "frame_shape"),
    ],
)
def test_bad_config_raises_one_line(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=f"ReplayConfig.{field}") as error:
        ReplayConfig(**kwargs)  # type: ignore[arg-type]
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("capacity", "num_streams", "message"),
    [(100, 0, "num_streams"), (20, 5, "entries per stream"), (0, 1, "capacity")],
)
def test_bad_buffer_arguments_raise_one_line(capacity: int, num_streams: int, message: str) -> None:
    with pytest.raises(ValueError, match=message) as error:
        FrameReplayBuffer(capacity, num_streams, FRAME_SHAPE)
    assert "\n" not in str(error.value)


def test_add_chunk_rejects_malformed_rows() -> None:
    buffer = FrameReplayBuffer(40, 2, FRAME_SHAPE)
    streams = make_streams(2, 5, seed=0)
    good = streams.rows(np.array([0, 1]), 0, 5)

    def with_argument(index: int, value: object) -> tuple[object, ...]:
        return (*good[:index], value, *good[index + 1 :])

    bad_calls = {
        "uint8": with_argument(1, good[1].astype(np.float32)),
        "frames must have shape": with_argument(1, good[1][:, :, :1]),
        "rewards must have shape": with_argument(3, good[3][:, :4]),
        "distinct": with_argument(0, np.array([1, 1])),
        r"in \[0, 2\)": with_argument(0, np.array([0, 2])),
    }
    for message, arguments in bad_calls.items():
        with pytest.raises(ValueError, match=message) as error:
            buffer.add_chunk(*arguments)  # type: ignore[arg-type]
        assert "\n" not in str(error.value)
    assert len(buffer) == 0


# ----------------------------------------------------------------------------------------------
# Exact transitions


@pytest.mark.parametrize("stack", [1, 2, 4])
def test_samples_equal_true_transitions(stack: int) -> None:
    """Streams added at different times, in chunks of 1..7 steps, without wrap-around."""
    num_streams, num_entries = 3, 60
    streams = make_streams(num_streams, num_entries, seed=stack, stack=stack)
    buffer = FrameReplayBuffer(num_streams * 64, num_streams, FRAME_SHAPE, stack, seed=1)
    rng = np.random.default_rng(2)

    def sample_and_check() -> None:
        if buffer.num_sampleable:
            assert_true_transitions(buffer.sample(64), streams, buffer.entries_written)

    # Streams 0 and 1 start alone, stream 2 catches up, then all three step in lockstep.
    add_in_chunks(buffer, streams, np.array([0, 1]), 0, 25, rng, 7, sample_and_check)
    add_in_chunks(buffer, streams, np.array([2]), 0, 25, rng, 7, sample_and_check)
    add_in_chunks(buffer, streams, np.array([0, 1, 2]), 25, 60, rng, 7, sample_and_check)
    np.testing.assert_array_equal(buffer.entries_written, [60, 60, 60])
    assert len(buffer) == 180
    batch = buffer.sample(2_000)
    assert_true_transitions(batch, streams, buffer.entries_written)
    # The batch contains zero-padded stacks (with more than one frame), terminal and truncated ends.
    assert stack == 1 or (batch.obs[:, 0] == 0).all(axis=(1, 2)).any()
    ids, entries = batch.stream_ids, batch.entry_ids
    assert streams.terminated[ids, entries].any() and streams.truncated[ids, entries].any()
    assert batch.obs.dtype == np.uint8 and batch.obs.shape == (2_000, stack, *FRAME_SHAPE)
    assert batch.actions.dtype == np.int64 and batch.rewards.dtype == np.float32
    assert batch.terminated.dtype == np.float32


def expected_n_step(
    streams: SyntheticStreams, stream: int, entry: int, written: int, n_step: int, gamma: float
) -> tuple[int, float]:
    """(m, n-step return) from the episode's boundaries: up to its last step or the newest entry."""
    last_step = entry
    while not (streams.terminated[stream, last_step] or streams.truncated[stream, last_step]):
        last_step += 1  # the synthetic streams always end their episodes
    steps = min(n_step, last_step - entry + 1, written - 1 - entry)
    rewards = streams.rewards[stream, entry : entry + steps].astype(np.float64)
    return steps, float((gamma ** np.arange(steps) * rewards).sum())


@pytest.mark.parametrize("n_step", [2, 3, 5])
def test_n_step_transitions_follow_their_episode(n_step: int) -> None:
    """n-step returns stop at episode ends (terminal or truncated) and at the newest entry."""
    gamma = 0.9
    num_streams, ring, num_entries = 2, 24, 150
    streams = make_streams(num_streams, num_entries + 10, seed=n_step, max_episode_steps=7)
    buffer = FrameReplayBuffer(num_streams * ring, num_streams, FRAME_SHAPE, seed=8)
    rng = np.random.default_rng(9)
    ids = np.arange(num_streams)
    seen_steps: set[int] = set()

    def sample_and_check() -> None:
        if not buffer.num_sampleable:
            return
        batch = buffer.sample(256, n_step=n_step, gamma=gamma)
        pairs = zip(batch.stream_ids, batch.entry_ids, strict=True)
        for index, (stream, entry) in enumerate(pairs):
            written = int(buffer.entries_written[stream])
            steps, ret = expected_n_step(streams, stream, entry, written, n_step, gamma)
            seen_steps.add(steps)
            assert batch.n_steps[index] == steps
            assert batch.rewards[index] == pytest.approx(ret, rel=1e-5, abs=1e-6)
            np.testing.assert_array_equal(batch.obs[index], streams.stacks[stream, entry])
            np.testing.assert_array_equal(
                batch.next_obs[index], streams.stacks[stream, entry + steps]
            )
            assert batch.terminated[index] == streams.terminated[stream, entry + steps - 1]

    add_in_chunks(buffer, streams, ids, 0, num_entries, rng, 9, sample_and_check)
    assert seen_steps == set(range(1, n_step + 1))


def test_one_step_sampling_reports_one_step() -> None:
    streams = make_streams(1, 30, seed=0)
    buffer = FrameReplayBuffer(30, 1, FRAME_SHAPE, seed=0)
    buffer.add_chunk(*streams.rows(np.array([0]), 0, 30))
    np.testing.assert_array_equal(buffer.sample(100).n_steps, 1.0)
    with pytest.raises(ValueError, match="n_step"):
        buffer.sample(1, n_step=0)


def test_truncated_transitions_bootstrap_from_the_final_observation() -> None:
    plan = [(3, TERMINATED), (2, TRUNCATED), (1, TRUNCATED), (1, TERMINATED)]
    streams = make_streams(1, 12, seed=0, plan=plan)
    buffer = FrameReplayBuffer(12, 1, FRAME_SHAPE, seed=0)
    buffer.add_chunk(*streams.rows(np.array([0]), 0, 12))
    batch = buffer.sample(500)
    assert_true_transitions(batch, streams, buffer.entries_written)
    # Entries: 0 1 2 [3 final] 4 5 [6 final] 7 [8 final] 9 [10 final] 11 (newest, no successor).
    assert set(batch.entry_ids.tolist()) == {0, 1, 2, 4, 5, 7, 9}
    by_entry = {int(entry): index for index, entry in enumerate(batch.entry_ids)}
    for truncated_entry, final_entry in [(5, 6), (7, 8)]:
        index = by_entry[truncated_entry]
        assert batch.terminated[index] == 0.0
        np.testing.assert_array_equal(batch.next_obs[index], streams.stacks[0, final_entry])
    assert batch.terminated[by_entry[2]] == 1.0 and batch.terminated[by_entry[9]] == 1.0
    # Entry 7 starts an episode after entry 6's final frame: its s holds one frame, s' two.
    np.testing.assert_array_equal(batch.obs[by_entry[7], :3], 0)
    np.testing.assert_array_equal(batch.next_obs[by_entry[7], :2], 0)
    np.testing.assert_array_equal(batch.next_obs[by_entry[7], 2], encode_frame(0, 7))


def test_ring_wraparound_never_returns_stale_frames() -> None:
    """Fill a 16-entry ring per stream 12 times over, in chunks up to 40 (longer than a ring)."""
    num_streams, ring, num_entries = 2, 16, 200
    streams = make_streams(num_streams, num_entries, seed=3, max_episode_steps=8)
    buffer = FrameReplayBuffer(num_streams * ring, num_streams, FRAME_SHAPE, seed=4)
    rng = np.random.default_rng(5)

    def sample_and_check() -> None:
        if buffer.num_sampleable:
            batch = buffer.sample(128)
            assert_true_transitions(batch, streams, buffer.entries_written)
            oldest_kept = np.maximum(buffer.entries_written[batch.stream_ids] - ring, 0)
            assert (batch.entry_ids - (STACK - 1) >= oldest_kept).all()

    ids = np.arange(num_streams)
    add_in_chunks(buffer, streams, ids, 0, num_entries, rng, 40, sample_and_check)
    assert len(buffer) == num_streams * ring
    assert buffer.entries_written.tolist() == [num_entries] * num_streams


def test_every_stored_transition_is_sampled_about_equally_often() -> None:
    """Uniform over transitions (not streams): a full wrapped ring and a half-empty one."""
    ring = 12
    streams = make_streams(2, 30, seed=6, max_episode_steps=4)
    buffer = FrameReplayBuffer(2 * ring, 2, FRAME_SHAPE, seed=7)
    buffer.add_chunk(*streams.rows(np.array([0]), 0, 30))
    buffer.add_chunk(*streams.rows(np.array([1]), 0, 4))
    expected = stored_transitions(streams, buffer.entries_written, ring, STACK)
    assert buffer.num_sampleable == len(expected)
    assert {stream for stream, _ in expected} == {0, 1}

    num_samples = 400 * len(expected)
    batch = buffer.sample(num_samples)
    assert_true_transitions(batch, streams, buffer.entries_written)
    counts = Counter(zip(batch.stream_ids.tolist(), batch.entry_ids.tolist(), strict=True))
    assert set(counts) == expected
    # 400 expected draws each: 5 standard deviations is about +-100.
    assert min(counts.values()) > 300 and max(counts.values()) < 500


def test_sample_raises_until_a_transition_is_stored() -> None:
    buffer = FrameReplayBuffer(20, 2, FRAME_SHAPE)
    with pytest.raises(ValueError, match="no transition stored yet"):
        buffer.sample(1)
    streams = make_streams(2, 3, seed=0)
    buffer.add_chunk(*streams.rows(np.array([0, 1]), 0, 1))  # o0 has no successor yet
    with pytest.raises(ValueError, match="no transition stored yet") as error:
        buffer.sample(1)
    assert "\n" not in str(error.value)
    # A runner restarted stream 1 without a final observation: o0 -> o0' is no transition.
    restart = streams.rows(np.array([1]), 0, 1)
    buffer.add_chunk(*restart)
    assert buffer.num_sampleable == 0
    with pytest.raises(ValueError, match="no transition stored yet"):
        buffer.sample(1)
    buffer.add_chunk(*streams.rows(np.array([0]), 1, 2))
    assert buffer.num_sampleable == 1
    batch = buffer.sample(5)
    assert batch.stream_ids.tolist() == [0] * 5 and batch.entry_ids.tolist() == [0] * 5


def test_frames_before_a_streams_first_entry_are_zeros() -> None:
    """Even when entry 0 is not flagged as a start and the full ring holds frames 'before' it."""
    streams = make_streams(1, 8, seed=0, plan=[(20, TERMINATED)])
    streams.episode_start[0, 0] = False  # the runner attached in the middle of an episode
    buffer = FrameReplayBuffer(8, 1, FRAME_SHAPE, seed=0)
    buffer.add_chunk(*streams.rows(np.array([0]), 0, 8))  # exactly full: nothing overwritten
    batch = buffer.sample(300)
    assert_true_transitions(batch, streams, buffer.entries_written)
    assert 0 in batch.entry_ids


def test_sample_uses_the_given_generator() -> None:
    streams = make_streams(2, 20, seed=0)
    buffer = FrameReplayBuffer(40, 2, FRAME_SHAPE, seed=0)
    buffer.add_chunk(*streams.rows(np.array([0, 1]), 0, 20))
    first = buffer.sample(32, np.random.default_rng(9))
    again = buffer.sample(32, np.random.default_rng(9))
    np.testing.assert_array_equal(first.entry_ids, again.entry_ids)
    np.testing.assert_array_equal(first.stream_ids, again.stream_ids)


# ----------------------------------------------------------------------------------------------
# Size accounting


def test_len_nbytes_and_bytes_needed() -> None:
    buffer = FrameReplayBuffer(25, 3, FRAME_SHAPE)  # 8 entries per stream, 1 left over
    assert buffer.ring_capacity == 8 and len(buffer) == 0
    streams = make_streams(3, 10, seed=0)
    buffer.add_chunk(*streams.rows(np.array([0, 2]), 0, 5))
    assert len(buffer) == 10
    buffer.add_chunk(*streams.rows(np.array([0]), 5, 10))
    assert len(buffer) == 8 + 5
    assert buffer.nbytes == FrameReplayBuffer.bytes_needed(24, FRAME_SHAPE) == 24 * (6 + 16)
    # 1M transitions of 84x84: one frame each plus action, reward and 4 flags, about 7 GB.
    assert FrameReplayBuffer.bytes_needed(1_000_000) == 1_000_000 * (84 * 84 + 16)
    config = ReplayConfig(capacity=24, frame_shape=FRAME_SHAPE)
    assert FrameReplayBuffer.from_config(config, 3).nbytes == buffer.nbytes


# ----------------------------------------------------------------------------------------------
# Env-runner helpers


def test_stream_tracker_flags_follow_next_step_autoreset() -> None:
    tracker = StreamTracker(2)
    start, valid = tracker.reset()
    assert start.tolist() == [True, True] and valid.tolist() == [True, True]
    # (terminated, truncated) per step -> flags of the returned observations.
    steps = [
        (([False, True], [False, False]), ([False, False], [True, False])),
        (([False, False], [True, False]), ([False, True], [False, True])),
        (([False, False], [False, False]), ([True, False], [True, True])),
        (([False, False], [False, False]), ([False, False], [True, True])),
    ]
    for (terminated, truncated), (expected_start, expected_valid) in steps:
        start, valid = tracker.step(np.array(terminated), np.array(truncated))
        assert start.tolist() == expected_start and valid.tolist() == expected_valid
    # A new run (env.reset) forgets that env 0's last observation was final.
    tracker.step(np.array([True, False]), np.array([False, False]))
    tracker.reset()
    start, valid = tracker.step(np.array([False, False]), np.array([False, False]))
    assert start.tolist() == [False, False] and valid.tolist() == [True, True]
    with pytest.raises(ValueError, match="shape"):
        tracker.step(np.zeros(3, bool), np.zeros(3, bool))


def test_newest_frames_takes_the_last_of_each_stack() -> None:
    stacks = np.arange(2 * 4 * 2 * 3, dtype=np.uint8).reshape(2, 4, 2, 3)
    np.testing.assert_array_equal(newest_frames(stacks), stacks[:, 3])
    with pytest.raises(ValueError, match="newest_frames"):
        newest_frames(np.zeros((4, 3)))


def test_real_atari_vector_env_stacks_are_rebuilt_exactly() -> None:
    """300 steps of Breakout with life-loss terminations and 20-step truncations."""
    from ale_py.vector_env import AtariVectorEnv

    num_envs, num_steps, chunk_len, ring = 2, 300, 10, 64
    env = AtariVectorEnv(
        "breakout",
        num_envs=num_envs,
        num_threads=1,
        episodic_life=True,  # a lost life ends the episode: many terminations
        max_num_frames_per_episode=80,  # 20 agent steps: truncations
    )
    rng = np.random.default_rng(0)
    buffer = FrameReplayBuffer(num_envs * ring, num_envs, seed=0)
    tracker = StreamTracker(num_envs)
    stream_ids = np.arange(num_envs)
    obs, _ = env.reset(seed=0)
    start, valid = tracker.reset()
    # Everything the env returned, indexed [step, env]; observations[t] is obs_t.
    observations = np.zeros((num_steps + 1, *obs.shape), dtype=np.uint8)
    observations[0] = obs
    actions, rewards, terminations, truncations, rows, sampled = [], [], [], [], [], []
    for step in range(num_steps):
        action = rng.integers(0, env.single_action_space.n, num_envs)
        next_obs, reward, terminated, truncated, _ = env.step(action)
        rows.append((newest_frames(obs), action, reward, terminated, truncated, start, valid))
        start, valid = tracker.step(terminated, truncated)
        observations[step + 1] = next_obs
        actions.append(action)
        rewards.append(reward)
        terminations.append(terminated)
        truncations.append(truncated)
        obs = next_obs
        if (step + 1) % chunk_len == 0:
            columns = zip(*rows, strict=True)
            buffer.add_chunk(stream_ids, *(np.stack(column, axis=1) for column in columns))
            rows = []
            sampled.append(buffer.sample(64))
            # Check at once: later adds overwrite the ring, not what was returned.
            batch = sampled[-1]
            ids, entries = batch.stream_ids, batch.entry_ids
            np.testing.assert_array_equal(batch.obs, observations[entries, ids])
            np.testing.assert_array_equal(batch.next_obs, observations[entries + 1, ids])
            np.testing.assert_array_equal(batch.actions, np.stack(actions)[entries, ids])
            np.testing.assert_array_equal(batch.rewards, np.stack(rewards)[entries, ids])
            np.testing.assert_array_equal(batch.terminated, np.stack(terminations)[entries, ids])
    env.close()

    terminated_all, truncated_all = np.stack(terminations), np.stack(truncations)
    assert terminated_all.any() and truncated_all.any(), "the run should end episodes both ways"
    entries = np.concatenate([batch.entry_ids for batch in sampled])
    ids = np.concatenate([batch.stream_ids for batch in sampled])
    assert terminated_all[entries, ids].any() and truncated_all[entries, ids].any()
    ends = terminated_all | truncated_all
    assert not ends[entries - 1, ids][entries > 0].any(), "a final observation was sampled as s"


def test_replay_module_imports_neither_torch_nor_ray() -> None:
    """Env runners and tools can use the replay without torch (the package loads lazily)."""
    code = (
        "import sys, dsqn_rllib.replay.frame_replay\n"
        "print(sorted(name for name in ('torch', 'ray') if name in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"


def test_benchmark_reports_rates() -> None:
    throughput = benchmark(capacity=2_000, num_streams=2, chunk_len=8, seconds=0.02)
    assert throughput.add_frames_per_s > 0
    assert set(throughput.sample_batches_per_s) == {32, 128}
    assert all(rate > 0 for rate in throughput.sample_batches_per_s.values())
