"""Spark scan of a Parquet dataset: local path vs eddy:// cold vs eddy://
warm. Run by bench/benches/spark.rs: scan.py MASTER JAR LIBDIR LOCALDIR UFSDIR BYTES.
The dataset is written once with Spark to LOCALDIR, copied into Eddy's root
under-storage (UFSDIR), then scanned three ways. Prints TIME lines."""
import os
import shutil
import sys
import time

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

master, jar, libdir, localdir, ufsdir, size = sys.argv[1:7]
size = int(size)
spark = (
    SparkSession.builder.master("local[2]")
    .appName("eddy-bench")
    .config("spark.jars", jar)
    .config("spark.driver.extraLibraryPath", libdir)
    .config("spark.hadoop.fs.eddy.impl", "io.eddy.hadoop.EddyFileSystem")
    .config("spark.ui.enabled", "false")
    .config("spark.driver.memory", "2g")
    .getOrCreate()
)
spark.sparkContext.setLogLevel("ERROR")
src = os.path.join(localdir, "dataset")
# Random doubles do not compress: ~8 bytes a value, 4 columns.
rows = size // 32
(spark.range(0, rows, numPartitions=8)
 .select(*[F.rand(seed=i).alias(f"c{i}") for i in range(4)])
 .write.mode("overwrite").parquet("file://" + src))
nbytes = sum(os.path.getsize(os.path.join(src, f)) for f in os.listdir(src))
shutil.copytree(src, os.path.join(ufsdir, "dataset"))
print(f"BYTES {nbytes}")


def scan(path):
    t = time.time()
    v = spark.read.parquet(path).select(*[F.sum(f"c{i}") for i in range(4)]).first()
    return time.time() - t, v


scan("file://" + src)  # warm the JVM and the page cache
for name, path in [("local", "file://" + src), ("eddy_cold", f"eddy://{master}/dataset"),
                   ("eddy_warm", f"eddy://{master}/dataset"), ("local2", "file://" + src)]:
    t, v = scan(path)
    print(f"TIME {name} {t:.3f}")
spark.stop()
