// A user's own Socket.IO app, as the harness meets it: Node's engine.io, no x-pod header, no whoami event.
// HOST, PORT and POD_NAME come from the environment, as the local backend sets them.
const http = require("http");
const { Server } = require("socket.io");

const server = http.createServer();
const io = new Server(server);
io.on("connection", (socket) => {
  socket.on("echo", (data, ack) => {
    if (typeof ack === "function") ack(data);
  });
});
server.listen(Number(process.env.PORT), process.env.HOST, () => {
  console.log(`${process.env.POD_NAME} listening on ${process.env.HOST}:${process.env.PORT}`);
});
process.on("SIGTERM", () => {
  io.close();
  setTimeout(() => process.exit(0), 1000).unref();
});
