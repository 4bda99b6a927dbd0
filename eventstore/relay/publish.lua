local added, i = 0, 3
local count = tonumber(ARGV[2])
for n = 1, count do
  local id, nfields = ARGV[i], tonumber(ARGV[i + 1])
  local args = {'XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], id}
  for k = i + 2, i + 1 + 2 * nfields do
    args[#args + 1] = ARGV[k]
  end
  i = i + 2 + 2 * nfields
  local res = redis.pcall(unpack(args))
  if type(res) == 'table' and res.err then
    if not string.find(res.err, 'equal or smaller', 1, true) then
      return {added, n - 1, res.err}
    end
  else
    added = added + 1
  end
end
return {added, count, ''}
