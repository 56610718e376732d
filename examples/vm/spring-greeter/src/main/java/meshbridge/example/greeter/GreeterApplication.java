package meshbridge.example.greeter;

import org.springframework.beans.factory.annotation.Value;
import org.springframework.boot.SpringApplication;
import org.springframework.boot.autoconfigure.SpringBootApplication;
import org.springframework.web.bind.annotation.GetMapping;
import org.springframework.web.bind.annotation.RequestParam;
import org.springframework.web.bind.annotation.RestController;

/** A greeter with one endpoint; Spring Cloud's Eureka client registers it on startup. */
@SpringBootApplication
@RestController
public class GreeterApplication {

  @Value("${eureka.instance.metadata-map.version:unknown}")
  private String version;

  @Value("${eureka.instance.instance-id:greeter}")
  private String instanceId;

  public static void main(String[] args) {
    SpringApplication.run(GreeterApplication.class, args);
  }

  @GetMapping("/hello")
  public String hello(@RequestParam(defaultValue = "world") String name) {
    return "hello " + name + " from " + instanceId + " (" + version + ")\n";
  }
}
