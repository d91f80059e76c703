import java.net.URI;
import java.nio.ByteBuffer;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FSDataInputStream;
import org.apache.hadoop.fs.FSDataOutputStream;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;

/**
 * Raw read throughput of a cached file through EddyFileSystem (heap byte[]
 * and direct ByteBuffer) vs FileSystem.getLocal reading the same bytes from
 * a page-cached local file. Run by bench/benches/spark.rs:
 * ReadBench MASTER LOCALDIR BYTES.
 */
public final class ReadBench {
  private static final int CHUNK = 8 << 20;

  public static void main(String[] args) throws Exception {
    String master = args[0];
    long size = Long.parseLong(args[2]);
    Configuration conf = new Configuration();
    conf.set("fs.eddy.impl", "io.eddy.hadoop.EddyFileSystem");
    conf.set("eddy.user.file.writetype.default", "MUST_CACHE");
    FileSystem eddy = FileSystem.get(URI.create("eddy://" + master + "/"), conf);
    FileSystem local = FileSystem.getLocal(conf);
    byte[] chunk = new byte[CHUNK];
    for (int i = 0; i < CHUNK; i++) {
      chunk[i] = (byte) (i * 31 % 251);
    }
    Path e = new Path("/readbench.bin");
    Path l = new Path(args[1], "readbench.bin");
    for (FileSystem fs : new FileSystem[] {eddy, local}) {
      Path p = fs == eddy ? e : l;
      try (FSDataOutputStream out = fs.create(p, true)) {
        for (long done = 0; done < size; done += CHUNK) {
          out.write(chunk, 0, (int) Math.min(CHUNK, size - done));
        }
      }
    }
    double bestHeap = 1e9, bestDirect = 1e9, bestLocal = 1e9;
    ByteBuffer direct = ByteBuffer.allocateDirect(CHUNK);
    for (int run = 0; run < 4; run++) { // run 0 warms up (JIT, mappings, page cache)
      double h = time(eddy, e, chunk, null, size);
      double d = time(eddy, e, chunk, direct, size);
      double lt = time(local, l, chunk, null, size);
      if (run > 0) {
        bestHeap = Math.min(bestHeap, h);
        bestDirect = Math.min(bestDirect, d);
        bestLocal = Math.min(bestLocal, lt);
      }
    }
    System.out.printf("eddy_heap_gbps %.2f%n", size / bestHeap / 1e9);
    System.out.printf("eddy_direct_gbps %.2f%n", size / bestDirect / 1e9);
    System.out.printf("local_gbps %.2f%n", size / bestLocal / 1e9);
    eddy.delete(e, false);
    eddy.close();
  }

  /** Seconds to read the whole file sequentially; checks the length. */
  private static double time(FileSystem fs, Path p, byte[] buf, ByteBuffer direct, long size) throws Exception {
    long start = System.nanoTime();
    long total = 0;
    try (FSDataInputStream in = fs.open(p)) {
      while (true) {
        int n;
        if (direct != null) {
          direct.clear();
          n = in.read(direct);
        } else {
          n = in.read(buf, 0, buf.length);
        }
        if (n < 0) {
          break;
        }
        total += n;
      }
    }
    if (total != size) {
      throw new IllegalStateException("read " + total + " of " + size);
    }
    return (System.nanoTime() - start) / 1e9;
  }
}
