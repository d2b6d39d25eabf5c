-- GET /v1/invoices/{id}, ids drawn at random from ids.txt (one per line).
local ids = {}
for line in io.lines(os.getenv("BENCH_IDS")) do ids[#ids + 1] = line end
math.randomseed(os.time())
request = function()
  return wrk.format("GET", "/v1/invoices/" .. ids[math.random(#ids)])
end
