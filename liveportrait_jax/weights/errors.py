"""Errors raised while reading and mapping checkpoints. Every message names the file."""


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable, corrupt or does not fit the model."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint's pickle asks for something other than tensor reconstruction."""


class CheckpointMismatchError(CheckpointError):
    """Strict loading failed: missing keys, unexpected keys or shape mismatches (all listed)."""

    def __init__(self, source, missing=(), unexpected=(), mismatched=()):
        self.source = str(source)
        self.missing = sorted(missing)
        self.unexpected = sorted(unexpected)
        self.mismatched = sorted(mismatched)
        lines = [
            f'{self.source}: checkpoint does not fit the model '
            f'({len(self.missing)} missing, {len(self.unexpected)} unexpected, '
            f'{len(self.mismatched)} shape mismatches)'
        ]
        for title, items in (
            ('missing', self.missing),
            ('unexpected', self.unexpected),
            ('shape mismatch', self.mismatched),
        ):
            for item in items:
                lines.append(f'  {title}: {item}')
        super().__init__('\n'.join(lines))
