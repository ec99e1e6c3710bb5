// Apache Curator's own ServiceDiscovery (Debian's libcurator-discovery-java 5.4), run by the
// discovery tests as the Java side: `list` reads a service as Java senders do
// (JsonInstanceSerializer<Map>, queryForInstances, a ServiceProvider); `register ID` registers
// an instance with a Map payload and stays up until killed. One line per fact on stdout.
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.apache.curator.framework.CuratorFramework;
import org.apache.curator.framework.CuratorFrameworkFactory;
import org.apache.curator.retry.RetryOneTime;
import org.apache.curator.x.discovery.ServiceDiscovery;
import org.apache.curator.x.discovery.ServiceDiscoveryBuilder;
import org.apache.curator.x.discovery.ServiceInstance;
import org.apache.curator.x.discovery.ServiceProvider;
import org.apache.curator.x.discovery.UriSpec;
import org.apache.curator.x.discovery.details.JsonInstanceSerializer;

public class CuratorCheck {
    @SuppressWarnings({"rawtypes", "unchecked"})
    public static void main(String[] args) throws Exception {
        String hosts = args[0], base = args[1], service = args[2], mode = args[3];
        CuratorFramework client = CuratorFrameworkFactory.newClient(hosts, 4000, 4000, new RetryOneTime(100));
        client.start();
        if (!client.blockUntilConnected(10, TimeUnit.SECONDS)) {
            throw new IllegalStateException("no ZooKeeper at " + hosts);
        }
        ServiceDiscovery<Map> discovery = ServiceDiscoveryBuilder.builder(Map.class)
                .client(client)
                .basePath(base)
                .serializer(new JsonInstanceSerializer<>(Map.class))
                .build();
        discovery.start();
        if (mode.equals("list")) {
            for (ServiceInstance<Map> i : discovery.queryForInstances(service)) {
                Map payload = i.getPayload();
                Map endpoints = (Map) payload.get("endpoints");
                System.out.println("instance id=" + i.getId() + " name=" + i.getName()
                        + " address=" + i.getAddress() + " port=" + i.getPort() + " sslPort=" + i.getSslPort()
                        + " enabled=" + i.isEnabled() + " type=" + i.getServiceType()
                        + " uri=" + i.buildUriSpec() + " region=" + payload.get("region")
                        + " weight=" + payload.get("weight") + " relay=" + endpoints.get("relay")
                        + " payloadClass=" + payload.getClass().getName());
            }
            ServiceProvider<Map> provider = discovery.serviceProviderBuilder().serviceName(service).build();
            provider.start();
            ServiceInstance<Map> one = provider.getInstance();
            System.out.println("provider id=" + (one == null ? "none" : one.getId()));
            provider.close();
            discovery.close();
            client.close();
            System.out.println("done");
        } else {
            Map<String, Object> payload = new LinkedHashMap<>();
            payload.put("region", "eu-central-1");
            payload.put("weight", 2);
            payload.put("endpoints", Map.of("relay", "https://127.0.0.2:9443"));
            ServiceInstance<Map> instance = ServiceInstance.<Map>builder()
                    .name(service).id(args[4]).address("127.0.0.2").sslPort(9443).payload(payload)
                    .uriSpec(new UriSpec("{scheme}://{address}:{ssl-port}")).build();
            discovery.registerService(instance);
            System.out.println("registered " + instance.getId());
            Thread.sleep(Long.MAX_VALUE);
        }
    }
}
