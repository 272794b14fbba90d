package io.memwatch;

/**
 * Counters of a {@link Recorder}. Every event produced while it records is in exactly one of
 * written, dropped, abandoned or queued.
 *
 * @param written     events committed to the database
 * @param dropped     events the full queue could not take (rows in memwatch_losses)
 * @param abandoned   events queued but unwritten when the recorder closed with the database down
 * @param queued      events waiting to be written
 * @param batches     transactions committed
 * @param reconnects  connections made again after a loss
 * @param connected   whether the recorder is connected now
 * @param recordingId this recording in memwatch_recordings
 */
public record RecorderStats(long written, long dropped, long abandoned, long queued, long batches,
        long reconnects, boolean connected, long recordingId) {
}
