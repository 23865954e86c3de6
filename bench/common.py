"""What the bench scripts share."""

import os


# A section's hand-written analysis starts at this line; the scripts keep it (and
# everything after it, up to the next section) when they rewrite the measurements.
NOTES_MARK = "<!-- notes: kept when the bench rewrites this section -->"


def replace_section(path, heading, section):
    """Replaces the section of docs/benchmarks.md (`path`) that starts with `heading` by
    `section`, up to the next `## ` heading, keeping the old section's notes (from
    NOTES_MARK on); appends it when there is none yet."""
    text = open(path).read() if os.path.exists(path) else "# Benchmarks\n\n"
    start = text.find(heading)
    if start >= 0:
        end = text.find("\n## ", start + 1)
        old = text[start:end + 1] if end >= 0 else text[start:]
        mark = old.find(NOTES_MARK)
        if mark >= 0:
            section = section.rstrip("\n") + "\n\n" + old[mark:].rstrip("\n") + "\n"
        text = text[:start] + section + (text[end + 1:] if end >= 0 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    with open(path, "w") as f:
        f.write(text)


def drop_page_cache(path):
    """Writes back and drops `path`'s page cache: the next reader (an exec) reads it from
    disk, as it would a file that has been there a while."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
