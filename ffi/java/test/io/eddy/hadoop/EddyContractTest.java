package io.eddy.hadoop;

import java.io.EOFException;
import java.io.FileNotFoundException;
import java.io.IOException;
import java.net.URI;
import java.nio.ByteBuffer;
import java.util.Arrays;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.BlockLocation;
import org.apache.hadoop.fs.FSDataInputStream;
import org.apache.hadoop.fs.FSDataOutputStream;
import org.apache.hadoop.fs.FileAlreadyExistsException;
import org.apache.hadoop.fs.FileStatus;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;

/**
 * The Hadoop FileSystem contract, as the FileSystem specification states
 * it, checked against a real Eddy cluster (no test framework: the runner
 * cli/tests/hadoop.rs passes the master address and expects exit 0).
 */
public final class EddyContractTest {
  private static int failures;

  private static void check(boolean ok, String what) {
    if (!ok) {
      failures++;
      System.err.println("check failed: " + what);
    }
  }

  interface Op {
    void run() throws Exception;
  }

  private static void expect(Class<? extends Throwable> type, String what, Op op) {
    try {
      op.run();
      check(false, what + ": no " + type.getSimpleName());
    } catch (Throwable t) {
      check(type.isInstance(t), what + ": got " + t);
    }
  }

  private static byte[] data(int n) {
    byte[] b = new byte[n];
    for (int i = 0; i < n; i++) {
      b[i] = (byte) (i * 13 % 251);
    }
    return b;
  }

  public static void main(String[] args) throws Exception {
    Configuration conf = new Configuration();
    conf.set("fs.eddy.impl", EddyFileSystem.class.getName());
    conf.set("fs.eddy.impl.disable.cache", "true");
    conf.setLong("eddy.user.block.size.bytes.default", 1 << 20);
    FileSystem fs = FileSystem.get(URI.create("eddy://" + args[0] + "/"), conf);
    check(fs.getScheme().equals("eddy"), "scheme");
    check(fs.getUri().toString().equals("eddy://" + args[0]), "uri " + fs.getUri());

    Path dir = new Path("/contract");
    check(fs.mkdirs(dir), "mkdirs");
    check(fs.mkdirs(dir), "mkdirs of an existing directory is true");
    byte[] bytes = data(3 * (1 << 20) + 4321);
    Path f = new Path(dir, "sub/file.bin"); // create makes missing parents
    try (FSDataOutputStream out = fs.create(f, false)) {
      out.write(bytes, 0, 1000);
      out.write(bytes[1000]);
      out.write(bytes, 1001, bytes.length - 1001);
    }
    FileStatus st = fs.getFileStatus(f);
    check(st.getLen() == bytes.length && st.isFile(), "status after create " + st);
    check(st.getBlockSize() == 1 << 20, "block size " + st.getBlockSize());
    check(fs.getFileStatus(new Path(dir, "sub")).isDirectory(), "parent made");
    expect(FileAlreadyExistsException.class, "create without overwrite", () -> fs.create(f, false));
    expect(IOException.class, "append", () -> fs.append(f));

    {
      FSDataInputStream in = fs.open(f);
      byte[] back = new byte[bytes.length];
      in.readFully(back);
      check(Arrays.equals(back, bytes), "read back");
      check(in.read() == -1, "read at the end is -1");
      in.seek(10);
      check(in.getPos() == 10 && in.read() == (bytes[10] & 0xff), "seek then read");
      byte[] part = new byte[5000];
      in.readFully(2 * (1 << 20) - 100, part); // positioned, across a block boundary
      check(Arrays.equals(part, Arrays.copyOfRange(bytes, 2 * (1 << 20) - 100, 2 * (1 << 20) + 4900)), "pread");
      check(in.getPos() == 11, "pread does not move the position");
      ByteBuffer direct = ByteBuffer.allocateDirect(4096);
      in.seek(1 << 20);
      int n = in.read(direct);
      direct.flip();
      byte[] got = new byte[n];
      direct.get(got);
      check(n > 0 && Arrays.equals(got, Arrays.copyOfRange(bytes, 1 << 20, (1 << 20) + n)), "direct ByteBuffer read");
      expect(EOFException.class, "seek before the start", () -> in.seek(-1));
      expect(EOFException.class, "seek past the end", () -> in.seek(bytes.length + 1));
      in.seek(bytes.length);
      check(in.read(new byte[10], 0, 10) == -1, "read at the end returns -1");
      in.close();
      expect(IOException.class, "read after close", () -> in.read());
    }

    FileStatus[] list = fs.listStatus(dir);
    check(list.length == 1 && list[0].isDirectory() && list[0].getPath().getName().equals("sub"), "list " + Arrays.toString(list));
    check(fs.listStatus(f).length == 1, "list of a file is the file");
    expect(FileNotFoundException.class, "list of a missing path", () -> fs.listStatus(new Path("/nope")));
    expect(FileNotFoundException.class, "status of a missing path", () -> fs.getFileStatus(new Path("/nope")));
    expect(FileNotFoundException.class, "open of a missing file", () -> fs.open(new Path("/nope")));
    expect(FileNotFoundException.class, "open of a directory", () -> fs.open(dir));

    BlockLocation[] locs = fs.getFileBlockLocations(fs.getFileStatus(f), 0, bytes.length);
    check(locs.length == 4, "one location per block: " + locs.length);
    check(locs[0].getHosts().length == 1 && locs[0].getHosts()[0].equals("127.0.0.1"), "worker host " + Arrays.toString(locs[0].getHosts()));
    check(locs[1].getOffset() == 1 << 20 && locs[1].getLength() == 1 << 20, "block range");

    Path g = new Path(dir, "renamed.bin");
    check(fs.rename(f, g), "rename");
    check(!fs.exists(f) && fs.getFileStatus(g).getLen() == bytes.length, "renamed");
    check(!fs.rename(new Path("/nope"), g), "rename of a missing source is false");
    Path into = new Path("/contract/into");
    fs.mkdirs(into);
    check(fs.rename(g, into), "rename into a directory");
    check(fs.exists(new Path(into, "renamed.bin")), "moved under the directory");

    fs.setWorkingDirectory(dir);
    check(fs.getFileStatus(new Path("into")).isDirectory(), "relative paths use the working directory");

    expect(IOException.class, "delete of a non-empty directory without recursive", () -> fs.delete(dir, false));
    check(!fs.delete(new Path("/nope"), false), "delete of a missing path is false");
    check(fs.delete(dir, true), "recursive delete");
    check(!fs.exists(dir), "deleted");
    fs.close();

    if (failures > 0) {
      System.err.println(failures + " checks failed");
      System.exit(1);
    }
    System.out.println("all Hadoop FileSystem contract checks passed");
  }
}
