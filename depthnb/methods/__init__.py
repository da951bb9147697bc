"""The methods: each is a `depthnb.engine.Method` (networks + named loss terms + stages).

`METHODS` maps the short names that `depthnb train --method NAME` accepts to 'module:Class' paths; any
other method can be named by its 'module:Class' path directly.
"""
METHODS = {
    'supervised': 'depthnb.methods.supervised:SupervisedStereo',
    'dfr': 'depthnb.methods.dfr:DFR',
    'lsim': 'depthnb.methods.lsim:LSIM',
    'reciprocal': 'depthnb.methods.reciprocal:Reciprocal',
    'coopnet': 'depthnb.methods.coopnet:CoopNet',
    'sgdepth': 'depthnb.methods.sgdepth:SGDepth',
    'real_stereo': 'depthnb.methods.realstereo:RealStereo',
}
