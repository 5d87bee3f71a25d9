import de.bwaldvogel.mongo.MongoServer;
import de.bwaldvogel.mongo.MongoVersion;
import de.bwaldvogel.mongo.backend.memory.MemoryBackend;
import java.util.List;

/**
 * mongo-java-server's in-memory backend on one loopback port: a MongoDB-API server that
 * applies each single-document write atomically, for tests. Not a database: nothing is kept
 * on disk.
 *
 * <p>It answers as MongoDB 6.0 (wire version 17): its own newest ServerVersion reports wire
 * version 8, which pymongo 4.x refuses, while the backend serves whatever version it is given.
 *
 * <p>Usage: java -cp CLASSPATH AtomicMongoServer HOST PORT
 */
public final class AtomicMongoServer {
    private static final MongoVersion MONGO_6_0 =
            new MongoVersion() {
                @Override
                public List<Integer> getVersionArray() {
                    return List.of(6, 0, 0);
                }

                @Override
                public int getWireVersion() {
                    return 17;
                }
            };

    private AtomicMongoServer() {}

    public static void main(String[] args) throws InterruptedException {
        if (args.length != 2) {
            System.err.println("usage: AtomicMongoServer HOST PORT");
            System.exit(2);
        }
        MongoServer server = new MongoServer(new MemoryBackend().version(MONGO_6_0));
        server.bind(args[0], Integer.parseInt(args[1]));
        Runtime.getRuntime().addShutdownHook(new Thread(server::shutdownNow));
        System.err.println("AtomicMongoServer: listening on " + server.getLocalAddress());
        Thread.currentThread().join();
    }
}
