"""TensorBoard event files beside metrics.jsonl, so `tensorboard --logdir runs` shows every run.

Written with tensorboardX (no TensorFlow, no torch). Each metrics row becomes scalars at its step:
`loss/train`, `loss/val` (one chart for both), and every other number under its own name
(learning_rate, grad_norm, sharpness, loss_scale, tokens_per_second, ...; `_std` the spread over
seeds). A resume opens a new event file that purges the steps after its checkpoint, as
metrics.jsonl drops those rows. `read` gives the scalars of a folder's event files back.
"""

import struct
from pathlib import Path

TAGS = {"train_loss": "loss/train", "val_loss": "loss/val"}


def tag(key: str) -> str:
    """The TensorBoard tag of a metrics key."""
    return TAGS.get(key, key)


class EventLog:
    """`write(row)` for each metrics row; events go to `run_dir/events/`."""

    def __init__(self, run_dir: Path, resume_step: int | None = None):
        from tensorboardX import SummaryWriter

        purge = None if resume_step is None else resume_step + 1
        # a file per session, named after its first step too: two sessions in one second keep both files, in order
        self.writer = SummaryWriter(str(Path(run_dir) / "events"), purge_step=purge, flush_secs=10,
                                    filename_suffix=f".from{resume_step or 0:010d}")

    def write(self, row: dict) -> None:
        for key, value in row.items():
            if key != "step" and isinstance(value, int | float):
                self.writer.add_scalar(tag(key), value, row["step"])

    def close(self) -> None:
        self.writer.close()


def read(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """{tag: [(step, value), ...]} of every scalar in the event files under `folder`, in file order.

    Reads TFRecord framing directly (length, its CRC, the Event proto, its CRC); a later file's steps
    replace an earlier one's from the step it purges on (as TensorBoard shows them).
    """
    from tensorboardX.proto import event_pb2

    scalars: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(Path(folder).rglob("events.out.tfevents.*")):
        raw, at = path.read_bytes(), 0
        while at + 12 <= len(raw):
            (length,) = struct.unpack("<Q", raw[at:at + 8])
            event = event_pb2.Event.FromString(raw[at + 12:at + 12 + length])
            at += 12 + length + 4
            if event.HasField("session_log") and event.session_log.status == event.session_log.START:
                scalars = {k: [(s, v) for s, v in pts if s < event.step] for k, pts in scalars.items()}
            for value in event.summary.value:
                scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return scalars
