// Makes one socket call fail for real and logs the JDK's own exception the way
// an application does: an ISO timestamp, then the exception's toString()
// (tests/test_program_logs.py).
//   java -cp DIR Fail MODE PORT
// MODE: reset (write, read: the server resets: "Connection reset"),
//       broken-pipe (the server's FIN; write until "Broken pipe"),
//       refused (connect to a closed port: ConnectException).
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.time.Instant;

public class Fail {
    public static void main(String[] args) throws Exception {
        String mode = args[0];
        int port = Integer.parseInt(args[1]);
        try (Socket socket = new Socket()) {
            socket.connect(new InetSocketAddress("127.0.0.1", port));
            OutputStream out = socket.getOutputStream();
            InputStream in = socket.getInputStream();
            if (mode.equals("reset")) {
                out.write("hello\n".getBytes());
                in.read();
            } else if (mode.equals("broken-pipe")) {
                if (in.read() != -1) throw new IllegalStateException("expected the server's FIN");
                for (int i = 0; i < 100000; i++) {  // bounded: the first write draws RST, a later one EPIPE
                    out.write('x');
                    out.flush();
                }
            }
            System.out.println(Instant.now() + " no failure");
        } catch (java.io.IOException e) {
            // As a logger prints it: the line, then the stack trace (whose innermost
            // JDK frame, NioSocketImpl.implRead/implWrite or Net.connect0, names the op).
            System.out.println(Instant.now() + " ERROR " + e);
            for (StackTraceElement frame : e.getStackTrace()) {
                System.out.println("\tat " + frame);
            }
        }
    }
}
