package io.eddy.hadoop;

import java.io.IOException;
import java.io.OutputStream;
import java.lang.ref.Cleaner;

/**
 * Writes a new Eddy file with the configured write type. The file becomes
 * visible (complete) when the stream is closed.
 */
final class EddyOutputStream extends OutputStream {
  private static final int BUFFER = 1 << 20;
  private final long file;
  private final Cleaner.Cleanable cleanable;
  private final byte[] buf = new byte[BUFFER];
  private int used;
  private boolean closed;

  EddyOutputStream(long file) {
    this.file = file;
    this.cleanable = EddyFileSystem.CLEANER.register(this, new EddyInputStream.Closer(file));
  }

  private void open() throws IOException {
    if (closed) {
      throw new IOException("Stream is closed");
    }
  }

  @Override
  public synchronized void write(int b) throws IOException {
    open();
    if (used == BUFFER) {
      drain();
    }
    buf[used++] = (byte) b;
  }

  @Override
  public synchronized void write(byte[] b, int off, int len) throws IOException {
    open();
    if ((off | len) < 0 || off + len > b.length) {
      throw new IndexOutOfBoundsException("off " + off + ", len " + len);
    }
    if (len >= BUFFER) {
      drain();
      NativeEddy.write(file, b, off, len);
      return;
    }
    if (used + len > BUFFER) {
      drain();
    }
    System.arraycopy(b, off, buf, used, len);
    used += len;
  }

  private void drain() throws IOException {
    if (used > 0) {
      NativeEddy.write(file, buf, 0, used);
      used = 0;
    }
  }

  @Override
  public synchronized void flush() throws IOException {
    open();
    drain();
  }

  @Override
  public synchronized void close() throws IOException {
    if (closed) {
      return;
    }
    closed = true;
    try {
      drain();
    } finally {
      cleanable.clean(); // completes the file; errors surface as exceptions
    }
  }
}
