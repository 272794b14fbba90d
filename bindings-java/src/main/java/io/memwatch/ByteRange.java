package io.memwatch;

/**
 * A run of changed bytes inside a watched region.
 *
 * @param offset offset of the first changed byte from the start of the region
 * @param length number of changed bytes
 */
public record ByteRange(long offset, long length) {
    /**
     * Validates the range.
     *
     * @param offset offset from the start of the region, never negative
     * @param length number of bytes, never negative
     */
    public ByteRange {
        if (offset < 0 || length < 0) {
            throw new InvalidArgumentException("negative range: offset=" + offset + " length=" + length);
        }
    }
}
