package io.eddy.hadoop;

import java.nio.ByteBuffer;

/**
 * The native calls into libeddy (ffi/src/jni_glue.rs). Handles are opaque
 * longs owned by the library; every method throws IOException (or
 * FileNotFoundException / FileAlreadyExistsException) on failure.
 */
final class NativeEddy {
  private static boolean loaded;

  private NativeEddy() {}

  /**
   * Loads libeddy from {@code path} when given, else from java.library.path,
   * with a message that says how to fix a missing or foreign library.
   */
  static synchronized void load(String path) {
    if (loaded) {
      return;
    }
    try {
      if (path != null && !path.isEmpty()) {
        System.load(path);
      } else {
        System.loadLibrary("eddy");
      }
      loaded = true;
    } catch (UnsatisfiedLinkError e) {
      UnsatisfiedLinkError clear =
          new UnsatisfiedLinkError(
              "cannot load the Eddy native library (libeddy.so, built by `cargo build --release -p eddy-ffi`"
                  + " for " + System.getProperty("os.name") + "/" + System.getProperty("os.arch")
                  + "): put its directory on java.library.path (Spark: spark.driver.extraLibraryPath and"
                  + " spark.executor.extraLibraryPath) or set eddy.native.library to the file. Cause: "
                  + e.getMessage());
      clear.initCause(e);
      throw clear;
    }
  }

  /**
   * {@code token}: a credential ({@code eddy token create}), or "" for the environment's; the TLS
   * paths are "" when unset (no CA: plaintext).
   */
  static native long connect(
      String master,
      boolean shortCircuit,
      long timeoutMs,
      long metadataCacheMs,
      String token,
      String tlsCa,
      String tlsCert,
      String tlsKey);

  static native void disconnect(long client);

  /** id, length, block size, mtime ms, mode, is_dir, complete, persisted, percent cached. */
  static native long[] stat(long client, String path);

  /** [String[] names, long[] statuses (9 per entry, as stat)]. */
  static native Object[] list(long client, String path);

  static native boolean mkdirs(long client, String path);

  static native boolean delete(long client, String path, boolean recursive);

  static native void rename(long client, String src, String dst);

  static native long open(long client, String path, int readType);

  static native long create(long client, String path, int writeType, long blockSize);

  static native long length(long file);

  /** Bytes read into buf[off..], or -1 at the end of the file. */
  static native int pread(long file, long pos, byte[] buf, int off, int len);

  /** As pread, into a direct buffer's memory at off. */
  static native int preadDirect(long file, long pos, ByteBuffer buf, int off, int len);

  static native void write(long file, byte[] buf, int off, int len);

  /** Closes a stream; a writer completes its file. Closing twice is a no-op. */
  static native void close(long file);

  /** [long[] (offset, length) per block, String[] comma-separated hosts per block]. */
  static native Object[] blocks(long client, String path, long start, long len);
}
