package io.eddy.hadoop;

import java.io.EOFException;
import java.io.IOException;
import java.lang.ref.Cleaner;
import java.nio.ByteBuffer;
import org.apache.hadoop.fs.ByteBufferReadable;
import org.apache.hadoop.fs.FSInputStream;

/**
 * Reads an Eddy file: Seekable, PositionedReadable (pread from any thread),
 * and ByteBufferReadable (a direct buffer is filled straight from the
 * block, mapped from a worker on this host when there is one).
 */
final class EddyInputStream extends FSInputStream implements ByteBufferReadable {
  private final long file;
  private final long length;
  private final Cleaner.Cleanable cleanable;
  private long pos;
  private volatile boolean closed;

  EddyInputStream(long file) {
    this.file = file;
    this.length = NativeEddy.length(file);
    this.cleanable = EddyFileSystem.CLEANER.register(this, new Closer(file));
  }

  /** Frees the native stream when the user forgets to close it. */
  static final class Closer implements Runnable {
    private final long handle;

    Closer(long handle) {
      this.handle = handle;
    }

    @Override
    public void run() {
      NativeEddy.close(handle);
    }
  }

  private void open() throws IOException {
    if (closed) {
      throw new IOException("Stream is closed");
    }
  }

  @Override
  public synchronized void seek(long p) throws IOException {
    open();
    if (p < 0) {
      throw new EOFException("Cannot seek to a negative offset: " + p);
    }
    if (p > length) {
      throw new EOFException("Cannot seek past the end of the file: " + p + " > " + length);
    }
    pos = p;
  }

  @Override
  public synchronized long getPos() throws IOException {
    open();
    return pos;
  }

  @Override
  public boolean seekToNewSource(long targetPos) {
    return false;
  }

  @Override
  public synchronized int read() throws IOException {
    byte[] one = new byte[1];
    int n = read(one, 0, 1);
    return n <= 0 ? -1 : one[0] & 0xff;
  }

  @Override
  public synchronized int read(byte[] b, int off, int len) throws IOException {
    open();
    if (len == 0) {
      return 0;
    }
    int n = NativeEddy.pread(file, pos, b, off, len);
    if (n > 0) {
      pos += n;
    }
    return n;
  }

  @Override
  public int read(long position, byte[] b, int off, int len) throws IOException {
    open();
    if (len == 0) {
      return 0;
    }
    return NativeEddy.pread(file, position, b, off, len);
  }

  @Override
  public synchronized int read(ByteBuffer buf) throws IOException {
    open();
    int want = buf.remaining();
    if (want == 0) {
      return 0;
    }
    int n;
    if (buf.isDirect()) {
      n = NativeEddy.preadDirect(file, pos, buf, buf.position(), want);
    } else {
      n = NativeEddy.pread(file, pos, buf.array(), buf.arrayOffset() + buf.position(), want);
    }
    if (n > 0) {
      buf.position(buf.position() + n);
      pos += n;
    }
    return n;
  }

  @Override
  public synchronized int available() throws IOException {
    open();
    return (int) Math.min(Integer.MAX_VALUE, length - pos);
  }

  @Override
  public void close() {
    if (!closed) {
      closed = true;
      cleanable.clean();
    }
  }
}
